# Two commands matter: `make run` and `make test`. Both create the environment when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint model bench eval screenshots reliability clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	touch $(STAMP)

model: $(STAMP)
	$(BIN)/python -m vision.model --ensure

run: model
	$(BIN)/python -m relay

test: model
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: model
	$(BIN)/python -m bench

eval: model
	$(BIN)/python -m bench.vision_eval

screenshots: model
	$(BIN)/python -m tests.screenshots --out docs/screenshots

reliability: model
	$(BIN)/python -m bench.faults --out docs/reliability.md

clean:
	rm -rf $(VENV) .cache data
