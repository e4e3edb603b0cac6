# csip: `make run` serves on the embedded default; `make test` runs the whole suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test check lint format setup schemas certs bench clean screenshots

$(STAMP): pyproject.toml
	@version=$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || \
	  { echo "Python interpreter '$(PY)' was not found (or does not run): install it or set PY, e.g. PY=python3.11"; exit 1; }; \
	$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
	  { echo "csip needs Python 3.11+, $(PY) is Python $$version (set PY=python3.11)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

schemas: $(STAMP)
	$(BIN)/csip schemas fetch

certs: $(STAMP)
	$(BIN)/csip certs init
	@test -f certs/devices/demo-0001-combined.pem || $(BIN)/csip certs device --oem demo --serial 0001

setup: $(STAMP) schemas certs

run: setup
	$(BIN)/csip serve

test: setup
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

check: lint test

# The README's console screenshots (tests/data/console/), from `csip demo`'s data in headless
# Chromium; needs chromium and pngquant (apt-get install chromium pngquant).
screenshots: setup
	CSIP_REQUIRE_BROWSER=1 CSIP_UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest -q \
	  tests/integration/test_console_browser.py -k readme_screenshots

bench: setup
	$(BIN)/python bench/poll.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
