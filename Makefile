# Two entry points: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := demo

.PHONY: demo test install clean

$(BIN)/postergen: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/postergen

demo: install
	$(BIN)/postergen synth $(DEMO)/posters --n 2000 --seed 0 --force
	$(BIN)/postergen prepare $(DEMO)/posters -o $(DEMO)/dataset --size 64 --force
	$(BIN)/postergen info $(DEMO)/dataset

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(DEMO) .pytest_cache
