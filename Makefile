# Two commands: `make train` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install train test test-full bench clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

# The stamp depends on pyproject.toml: edit the dependencies and the next make reinstalls.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,tensorboard,optuna,launchers,onnx]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install srlab (idempotent)

train: $(STAMP) ## train the default recipe (experiment=photo_x4: light EDSR x4 on scikit-image photos)
	$(BIN)/srlab-train $(ARGS)

test: $(STAMP) ## fast test suite (< 6 min on 2 CPU cores)
	$(BIN)/python -m pytest -m "not slow" -q $(ARGS)

test-full: $(STAMP) ## every test, the slow ones too
	$(BIN)/python -m pytest -q $(ARGS)

bench: $(STAMP) ## training batches/s vs a hand-written loop (GPU if any; CPU < 10 min) -> benchmarks/results.json
	$(BIN)/python scripts/bench.py $(ARGS)

clean: ## remove .venv and outputs
	rm -rf $(VENV) outputs
