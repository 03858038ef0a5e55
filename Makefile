# The README's two commands: `make demo` and `make test`. Both create .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= demo-output
# The OHIF viewer served at /viewer: pinned and integrity-checked by `radserve viewer install`.
VIEWER := .viewer
VIEWER_STAMP := $(VIEWER)/RADSERVE_VIEWER_VERSION

.PHONY: demo demo-serve test lint typecheck pytest bench clean viewer

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# pyradiomics 3.0.1 builds from source and imports numpy in its setup.py without declaring
	# it, so its build needs numpy (and versioneer) installed first, without build isolation.
	$(BIN)/pip install --quiet -c constraints.txt numpy setuptools versioneer
	$(BIN)/pip install --quiet --no-build-isolation -c constraints.txt -e '.[dev,train]'
	touch $(STAMP)

$(VIEWER_STAMP): $(STAMP) radserve/server/viewer/install.py
	$(BIN)/radserve viewer install $(VIEWER)

viewer: $(VIEWER_STAMP)

demo-serve: $(STAMP) $(VIEWER_STAMP)
	$(BIN)/radserve demo demo/study --out $(OUT) --viewer-dir $(VIEWER) --serve

demo: $(STAMP) $(VIEWER_STAMP)
	$(BIN)/radserve demo demo/study --out $(OUT) --viewer-dir $(VIEWER)

lint: $(STAMP)
	$(BIN)/ruff check radserve tests bench
	$(BIN)/ruff format --check radserve tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) $(VIEWER_STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/seg_write.py

clean:
	rm -rf $(VENV) $(OUT) $(VIEWER) .pytest_cache .mypy_cache .ruff_cache
