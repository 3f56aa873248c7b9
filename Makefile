# Two commands do all of the set-up on a fresh machine:
#   make run    creates .venv on first use, runs a small campaign on the embedded
#               offline model, and exports its elites
#   make test   creates .venv on first use, runs ruff, mypy and the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN := quickstart-$(shell date +%Y%m%d-%H%M%S)
# The report test renders HTML in headless Chromium: Debian's package.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup run test test-fast lint clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the CPU build; any other spec pulls CUDA wheels.
	$(BIN)/pip install -q torch==2.13.0
	# llama-cpp-python builds from source; skipping LLaVA halves the build.
	CMAKE_ARGS="-DLLAVA_BUILD=OFF" $(BIN)/pip install -q -e '.[local,dev]'
	touch $(STAMP)

setup: $(STAMP)

$(CHROMIUM):
	$(SUDO) apt-get update -q
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends chromium

run: $(STAMP)
	# exit 3: stopped by its wall-time cap (README, "Exit status"); the rest goes on
	$(BIN)/qdsearch run experiments/quickstart.toml --name $(RUN) || [ $$? -eq 3 ]
	$(BIN)/qdsearch export archives/$(RUN) --format jsonl
	$(BIN)/qdsearch operators archives/$(RUN)
	$(BIN)/qdsearch report archives/$(RUN)

lint: $(STAMP)
	$(BIN)/ruff check qdsearch tests experiments
	$(BIN)/ruff format --check qdsearch tests
	$(BIN)/mypy qdsearch

test: lint $(CHROMIUM)
	$(BIN)/python -m pytest -q -p no:cacheprovider

# The edit-test loop: no slow (statistical, experiment) and no e2e tests, no lint.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not e2e"

clean:
	rm -rf $(VENV) *.egg-info
