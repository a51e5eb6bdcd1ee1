# Everything a user or CI needs: `make demo`, `make test`. The virtual environment is built on demand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 5000
# make demo EXECUTOR=celery runs the demo on the production engine (README, "On the production engine").
EXECUTOR ?=
# Optional extra arguments: make test-fast PYTEST_ARGS="tests/job", make bench BENCH_ARGS="--quick"
PYTEST_ARGS ?=
BENCH_ARGS  ?=

export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: venv test test-load test-fast lint format demo bench local-aws config push-image clean

venv: $(STAMP)

# Development installs both pin files: requirements.txt (runtime, what the Airflow image gets) and
# requirements-dev.txt (tests and tools, `-r requirements.txt` first).
$(STAMP): requirements.txt requirements-dev.txt include/job/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# `make test` leaves out the million-row load test (about 9 minutes here) to stay under half an hour;
# `make test-load` runs it, and CI (.ci/run) runs both.
test: $(STAMP) lint
	$(BIN)/python -m pytest -m "not load"

test-load: $(STAMP)
	$(BIN)/python -m pytest -m load

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python -m include.demo$(if $(EXECUTOR), --executor $(EXECUTOR))

bench: $(STAMP)
	$(BIN)/python -m include.bench $(BENCH_ARGS)

local-aws: $(STAMP)
	$(BIN)/python -m include.local_aws --port $(PORT)

# The resolved pipeline config (every CSV_IMPORT__ override applied) as JSON; exit 2 on an invalid config
config: $(STAMP)
	@PYTHONPATH=plugins $(BIN)/python -m batch_import.config

# Build the job image and push it to ECR (README, "Deploying to real AWS"): make push-image TAG=v1
push-image: $(STAMP)
	@test -n "$(TAG)" || { echo "usage: make push-image TAG=<tag> [REPOSITORY=<name>] [REGION=<region>]" >&2; exit 2; }
	$(BIN)/python -m include.deploy.push_image --tag "$(TAG)"$(if $(REPOSITORY), --repository "$(REPOSITORY)")$(if $(REGION), --region "$(REGION)")

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
