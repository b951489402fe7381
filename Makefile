# Two commands set up everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lab bench clean system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) system-deps

# Debian packages the test suite needs (Chromium for the browser tests); a no-op when present.
system-deps:
	@bash scripts/system-deps.sh

demo: install
	$(BIN)/qbank demo --serve

test: install
	bash scripts/ensure-services.sh
	$(BIN)/python -m pytest

lab: install
	$(BIN)/jupyter lab --notebook-dir=notebooks

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
