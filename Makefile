# Everything runs from a virtual environment in .venv, made on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
READY := $(VENV)/.ready
DEMO := build/demo

ENTRY ?= example_main.py
NAME ?= $(basename $(notdir $(ENTRY)))
MODE ?= onefile
DIST ?= dist
EXTRA ?=

.PHONY: test lint test-pythons demo exe bench clean

# The venv is rebuilt when pyproject.toml changes (or was never built here).
$(READY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test,lint,build,redis]'
	touch $@

## Lint, then the whole test suite (slow end-to-end tests included, and test-pythons from
## tests/test_other_pythons.py). Four test processes on two cores: most tests wait on processes
## they started (the suite uses about 1.6 cores on 3); worksteal evens out the long tests' tail.
## compileall first: the suite starts hundreds of Pythons that import jobsplit, and under
## PYTHONDONTWRITEBYTECODE (set on CI machines) each would compile it anew (about 0.15 s apiece).
test: lint $(READY)
	$(PY) -m compileall -q src
	$(PY) -m pytest -n 4 --dist worksteal

## ruff (lint and import order) and mypy (strict) on src/.
lint: $(READY)
	$(VENV)/bin/ruff check src
	$(VENV)/bin/mypy

## The golden vectors, random streams and one real run on Python 3.10, 3.12, 3.13 if present.
test-pythons: $(READY)
	scripts/test-pythons

## Run the example pool on this machine, with the template config (no machines.json: this host).
## --fresh: the demo starts over, here, even where another clone of this project ran it before.
demo: $(READY)
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	cp templates/config.ini templates/header.csv $(DEMO)/
	$(PY) example_main.py run --config-dir $(DEMO) --out $(DEMO)/out --yes --fresh

## Build one self-contained executable of ENTRY: dist/NAME (MODE=onedir: a folder, faster start).
## PYTHONHASHSEED=0 makes the build reproducible; the smoke run catches modules PyInstaller missed.
## The entry's code fingerprint is computed from its source here and bundled (see fingerprint.py).
exe: $(READY)
	@case "$(ENTRY)" in *" "*) echo "make exe: ENTRY=\"$(ENTRY)\" has a space, which make splits paths at; link or copy the entry to a path without one" >&2; exit 2;; esac
	mkdir -p build/fingerprints/$(NAME)
	$(PY) -c 'import sys, jobsplit.fingerprint as f; f.main(sys.argv[1:])' "$(ENTRY)" > build/fingerprints/$(NAME)/entry.fingerprint
	PYTHONHASHSEED=0 $(PY) -m PyInstaller --noconfirm --clean --log-level WARN --$(MODE) --name $(NAME) \
		--paths "$(abspath $(dir $(ENTRY)))" \
		--add-data "$(abspath templates):jobsplit/templates" \
		--add-data "$(abspath build/fingerprints/$(NAME)/entry.fingerprint):jobsplit" \
		--runtime-hook "$(abspath src/jobsplit/frozen_hook.py)" \
		--distpath "$(DIST)" --workpath build/pyinstaller/$(NAME)-$(MODE) --specpath build/pyinstaller/$(NAME)-$(MODE) \
		$(EXTRA) "$(ENTRY)"
	"$(DIST)/$(NAME)$(if $(filter onedir,$(MODE)),/$(NAME))" --version

## Run the benchmarks (several minutes; each prints its ratios against peers measured in the same run).
bench: $(READY)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf build dist $(VENV)
