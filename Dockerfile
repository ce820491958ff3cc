# syntax=docker/dockerfile:1
# One image for both services (and the one-shot migrate step); the command
# picks which. Every dependency ships manylinux wheels, so no stage needs a
# compiler; the final stage has none and runs as a non-root user.

# An exact Python release on a named Debian release, for both stages: a
# rebuild gets the same interpreter (tests/integration/test_compose.py).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/modelplane
COPY pyproject.toml setup.py README.md ./
COPY services ./services
COPY clients ./clients
RUN /opt/modelplane/bin/pip install ./clients .

# The test runner of the compose `tests` profile: the same suites CI runs;
# tests/external targets the running stack through MODELPLANE_TEST_* variables.
# The suites read the whole tree (docker-compose.yml, Dockerfile, docs/,
# README.md, proto/) and run `python -m bench`, so the stage holds all of it;
# .dockerignore keeps out local state, secrets and caches.
FROM build AS test
COPY . .
RUN /opt/modelplane/bin/pip install ./clients '.[dev]'
ENV PATH=/opt/modelplane/bin:$PATH PYTHONUNBUFFERED=1
CMD ["python", "-m", "pytest", "-q", "tests/external", "tests/integration", "tests/e2e"]

FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin modelplane
COPY --from=build /opt/modelplane /opt/modelplane
ENV PATH=/opt/modelplane/bin:$PATH PYTHONUNBUFFERED=1
USER 10001:10001
# gRPC: config_svc 50051, resolver_svc 50052; Prometheus: 9464, 9465.
EXPOSE 50051 50052 9464 9465
# Both services drain on SIGTERM (docs/operations.md, "Graceful shutdown").
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m"]
CMD ["modelplane_server.config_svc", "serve"]
