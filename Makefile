# Two commands set up everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lab bench clean system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,dist]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages only the test suite needs (Chromium for the browser tests); a no-op when present.
# `make demo` does not need them, so only `make test` installs them.
system-deps:
	@bash scripts/system-deps.sh

demo: install
	$(BIN)/qbank demo --serve

test: install system-deps
	bash scripts/ensure-services.sh
	$(BIN)/python -m pytest

lab: install
	$(BIN)/jupyter lab --notebook-dir=notebooks

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
