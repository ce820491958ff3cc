# The two commands a newcomer needs: `make run` and `make test`. Both build
# their own virtualenv from pyproject.toml the first time.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml clients/pyproject.toml | cksum | cut -d' ' -f1)
PROTOS := $(wildcard proto/modelplane/v1/*.proto)
GEN    := clients

.PHONY: run test unit proto proto-check lint typecheck bench clean

$(STAMP): pyproject.toml clients/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ./clients -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

run: $(STAMP)
	$(PY) -m modelplane_server.devstack

test: $(STAMP) proto-check lint typecheck
	$(PY) -m pytest -q

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

lint: $(STAMP)
	$(VENV)/bin/ruff check --quiet services clients tests bench

typecheck: $(STAMP)
	$(PY) -m mypy modelplane_server clients/modelplane

bench: $(STAMP)
	$(PY) -m bench

proto: $(STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m grpc_tools.protoc -I proto \
	  --python_out=$(GEN) --grpc_python_out=$(GEN) \
	  --mypy_out=quiet:$(GEN) --mypy_grpc_out=quiet:$(GEN) $(PROTOS)

# Regenerates into a scratch folder and fails when the committed code differs.
proto-check: $(STAMP)
	@tmp=$$(mktemp -d) && \
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m grpc_tools.protoc -I proto \
	  --python_out=$$tmp --grpc_python_out=$$tmp \
	  --mypy_out=quiet:$$tmp --mypy_grpc_out=quiet:$$tmp $(PROTOS) && \
	for f in $$(cd $$tmp && find modelplane -type f); do \
	  cmp -s $$tmp/$$f $(GEN)/$$f || { echo "stale generated code: $(GEN)/$$f (run make proto)"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp

clean:
	rm -rf $(VENV) .pytest_cache
