# Two entry points: `make demo` and `make test` (`make test-fast` for the edit-test loop). All create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := demo

.PHONY: demo test test-fast lint install clean screenshot

$(BIN)/postergen: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/postergen

# About 6 minutes of training on 2 CPU cores without bf16: the stable recipe at half width ran 1,000
# steps in 5.0 minutes in fp32 (197 img/s, `make demo` 5.5 minutes in all; `make demo DEMO_TRAIN="--steps
# 1000 --ngf 32 --ndf 32 --precision fp32"`), so 1,100 steps. No --preset: train picks the recipe
# measured best for that budget on this device (src/postergen/recipes.json) and says which and why; on
# a 2-core CPU 1,100 stable steps are 4.7 minutes, where the projected preset measured better on FD and
# SWD, so it trains that for as many of its own steps (173) (docs/training.md, Quality versus time).
DEMO_TRAIN := --steps 1100 --sample-every 200 --checkpoint-every 500

demo: install
	$(BIN)/postergen synth $(DEMO)/posters --n 2000 --seed 0 --force
	$(BIN)/postergen prepare $(DEMO)/posters -o $(DEMO)/dataset --size 64 --force
	$(BIN)/postergen info $(DEMO)/dataset
	$(BIN)/postergen train $(DEMO)/dataset -o $(DEMO)/run $(DEMO_TRAIN) --force
	$(BIN)/postergen sample $(DEMO)/run -o $(DEMO)/samples --n 8 --seed 0
	@echo
	@echo "posters:   $(DEMO)/posters/images   dataset: $(DEMO)/dataset"
	@echo "run:       $(DEMO)/run  (loss.png, samples/ over training, checkpoints/)"
	@echo "generated: $(DEMO)/samples/grid.png  (one row per genre)"

# Everything CI runs (.ci/run): the linter, then every test, the slow ones too (processes, torchrun,
# signals, the browser).
test: lint
	$(BIN)/python -m pytest -q

# The tests not marked slow (pyproject.toml): the quick loop while editing, under a minute on 2 cores.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# pyflakes' checks and import order (pyproject.toml [tool.ruff]).
lint: install
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(DEMO) .pytest_cache

# Retake the README's studio screenshot on the demo run (needs /usr/bin/chromium).
screenshot: install
	POSTERGEN_SCREENSHOT=docs/img/studio.png POSTERGEN_SCREENSHOT_RUNS=$(DEMO)/run $(BIN)/python -m pytest -q tests/test_web_browser.py
