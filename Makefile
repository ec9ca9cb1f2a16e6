# weasis-link: `make run` serves the API locally; `make test` runs every test and check.
# Both set up what they need on a fresh Debian machine (we run as root): Python packages in .venv, Debian
# packages through tools/ensure-debian-packages, the lint/IaC tools in their own virtualenvs (tools/check-iac).

SHELL := /bin/bash
.DEFAULT_GOAL := help

# The Lambda runtime's Python (3.12) when the machine has one (pyenv or PATH), else python3.
PYTHON312 := $(shell tools/find-python312 2>/dev/null)
PYTHON ?= $(if $(PYTHON312),$(PYTHON312),python3)
VENV := .venv
BIN := $(VENV)/bin
# Reinstall when pyproject.toml changes.
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)
# Everything the tests, the local stack and the benchmarks start: Orthanc (+ DICOMweb, Python plugin and the
# token filter's PyJWT), dcmtk (findscu), PostgreSQL and MariaDB (dcm4chee-arc-light's databases), Chromium for
# the launch-page test, valgrind (the cold-start benchmark's instruction counts).
DEBIAN_PACKAGES := orthanc orthanc-dicomweb orthanc-python python3-jwt python3-cryptography dcmtk postgresql \
	mariadb-server chromium chromium-driver valgrind

.PHONY: help run token test test-unit test-integration test-e2e lint typecheck iac build deploy bench \
	system-packages venv sample-archive openapi clean check-config

help:
	@echo "make run      serve the API on http://127.0.0.1:$${PORT:-3000} (embedded sample archive, S3 on moto)"
	@echo "              ARCHIVE=orthanc: serve from a local Orthanc seeded with synthetic studies"
	@echo "make token    print a development access token for that stack"
	@echo "make check-config CONFIG=file.yaml   validate a configuration and probe every archive it names"
	@echo "make test     every test and check (lint, types, IaC, unit, integration, end-to-end)"
	@echo "make bench    the benchmark table"
	@echo "make build    sam build (arm64, no Docker)   make deploy   sam deploy --guided"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) >&2
	@$(BIN)/python -m pip install -q --upgrade pip >&2
	@$(BIN)/python -m pip install -q -e '.[dev]' >&2
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

system-packages:
	@tools/ensure-debian-packages $(DEBIAN_PACKAGES)

# ARCHIVE=orthanc serves from a local Orthanc (installed and seeded with synthetic studies) instead of the
# embedded sample archive.
run: venv $(if $(filter orthanc,$(ARCHIVE)),system-packages)
	@$(BIN)/python -m weasis_link_dev.local_stack $(if $(ARCHIVE),--archive $(ARCHIVE)) $(RUN_ARGS)

token: venv
	@$(BIN)/python -m weasis_link_dev.dev_keys

# CONFIG defaults to $$WEASIS_LINK_CONFIG; CHECK_ARGS e.g. "--timeout 5 --archive pacs". Exit 1 if an archive fails.
check-config: venv
	@$(BIN)/python -m weasis_link.check_config $(CONFIG) $(CHECK_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

iac: venv
	tools/check-iac

test-unit: venv
	$(BIN)/pytest tests/unit -q

test-integration: venv system-packages
	$(BIN)/pytest tests/integration -q

test-e2e: venv system-packages
	$(BIN)/pytest tests/e2e -q

# The unit layer runs with hypothesis' `full` profile here: 10,000 generated PACS answers per property.
test: venv system-packages lint typecheck iac
	$(BIN)/pytest tests/unit -q --hypothesis-profile=full
	$(BIN)/pytest tests/integration tests/e2e -q

bench: venv system-packages
	$(BIN)/python -m weasis_link_dev.bench $(BENCH_ARGS)

build: venv
	tools/sam-build

deploy: build
	.venv-tools/bin/sam deploy --guided

sample-archive: venv
	$(BIN)/python tools/make_sample_archive.py

openapi: venv
	$(BIN)/python -m weasis_link_dev.openapi --write

clean:
	rm -rf .aws-sam .mypy_cache .ruff_cache .pytest_cache .hypothesis
