# recengine developer entry points. `make demo` and `make test` are the whole quick start.
#
# The virtual environment lives outside the clone (~/.cache/recengine/venv-pyX.Y), so the
# large torch wheel is installed once per machine and every clone (and CI run) reuses it; the
# editable install of this clone is redone whenever pyproject.toml or the clone's path changes.

PYTHON ?= python3
PYVER := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
VENV ?= $(HOME)/.cache/recengine/venv-py$(PYVER)
STAMP := $(VENV)/.installed-$(shell (cat pyproject.toml; pwd) | sha256sum | cut -c1-16)
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test lint unit venv infra chart images bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/recengine demo

# ruff, then the import contracts of pyproject.toml (layers, no circles, who may import what).
lint: venv
	$(BIN)/ruff check services operator bench tests tools
	PYTHONPATH=services:operator $(BIN)/lint-imports

# Installs (once, cached under ~/.cache/recengine) the real servers the tests start: Kafka,
# FerretDB, Redis, Graphite + statsd (tools/infra/README.md), helm and kubectl, the chart's
# docs generator (npm), and the Kubernetes control plane built from the Go module proxy (20-30
# min cold, seconds warm).
infra:
	bash tools/infra/install.sh all
	bash tools/k8s/install-helm.sh
	bash tools/chart/install-readme-generator.sh
	bash tools/k8s/images.sh setup
	bash tools/k8s/control-plane.sh

test: venv lint infra
	$(BIN)/python -m pytest $(PYTEST_ARGS)

chart: venv
	bash tools/k8s/install-helm.sh
	bash tools/chart/install-readme-generator.sh
	$(BIN)/python -m pytest -m chart tests/k8s $(PYTEST_ARGS)

images: venv
	$(BIN)/python -m pytest -m images tests/k8s $(PYTEST_ARGS)

unit: venv
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

bench: venv
	$(BIN)/python bench/trainer.py
	$(BIN)/python bench/serving.py --items 100000

clean:
	rm -rf build *.egg-info .pytest_cache .ruff_cache .import_linter_cache
