# The README's two commands: `make demo` and `make test`. Both create .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= demo-output

.PHONY: demo test lint typecheck pytest bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# pyradiomics 3.0.1 builds from source and imports numpy in its setup.py without declaring
	# it, so its build needs numpy (and versioneer) installed first, without build isolation.
	$(BIN)/pip install --quiet -c constraints.txt numpy setuptools versioneer
	$(BIN)/pip install --quiet --no-build-isolation -c constraints.txt -e '.[dev,train]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/radserve demo demo/study --out $(OUT)

lint: $(STAMP)
	$(BIN)/ruff check radserve tests bench
	$(BIN)/ruff format --check radserve tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/seg_write.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache
