# MolScope: `make run` starts the dashboard, `make test` runs the tests. Both set up first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test bench lint

setup: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps molsets==0.3.1
	$(BIN)/python -m core.runtime --build
	@touch $(STAMP)

run: setup
	$(BIN)/streamlit run app.py --server.address 127.0.0.1 --server.headless true

test: setup
	$(BIN)/python -m pytest tests

bench: setup
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	$(BIN)/python -m bench.run

lint: setup
	$(BIN)/ruff format --check . && $(BIN)/ruff check .
