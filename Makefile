# Everything runs from a virtual environment in .venv, made on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
READY := $(VENV)/.ready
DEMO := build/demo

ENTRY ?= example_main.py
NAME ?= $(basename $(notdir $(ENTRY)))
MODE ?= onefile
EXTRA ?=

.PHONY: test demo exe bench clean

# The venv is rebuilt when pyproject.toml changes (or was never built here).
$(READY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test,build]'
	touch $@

## Run the test suite (slow end-to-end tests included).
test: $(READY)
	$(PY) -m pytest

## Run the example pool on this machine, with the template config (no machines.json: this host).
demo: $(READY)
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	cp templates/config.ini templates/header.csv $(DEMO)/
	$(PY) example_main.py run --config-dir $(DEMO) --out $(DEMO)/out --yes

clean:
	rm -rf build dist $(VENV)
