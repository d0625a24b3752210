# The two commands that matter: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SAMPLE := data/sample
# AWS stack (README, "Deploy to AWS"). The lint tools and the SAM CLI pin libraries (checkov pins
# boto3) that clash with the project venv and with each other: each set gets its own venv.
ENV       ?= dev
LINT_VENV := .venv-lint
SAM_VENV  := .venv-sam
SAM       ?= $(SAM_VENV)/bin/sam
# The SAM venv is only built when SAM points into it.
SAM_DEPENDENCY := $(if $(filter $(SAM_VENV)/bin/sam,$(SAM)),$(SAM_VENV)/.installed)
LINT_TOOLS := "cfn-lint>=1.20,<2" "checkov>=3.2,<4" "statelint>=3.1,<4"
SAM_CLI    := "aws-sam-cli>=1.120,<2"

.PHONY: run test emulation bench lint check-java check-python sample clean
.PHONY: deploy package-jobs sync-template-sql sam-validate
.PHONY: build-CarrentalLayer build-ValidateUploadFunction build-ReportFunction
.PHONY: build-RunSchedulerStartFunction build-RunSchedulerFinishFunction build-PublishRunFunction

run: check-java $(VENV)/.runtime-installed
	$(BIN)/carrental run --input $(SAMPLE)

# The suite in TEST_WORKERS processes, a test file each at a time (a file's module fixtures,
# such as its Spark runs, are built once). Most of its time is Spark jobs on tiny data, bound by
# one JVM's planning and Python's calls into it rather than by the cores: on 2 cores, 2 workers
# took 15.5 min where one took 23 min (same load). Each worker starts its own local Spark.
TEST_WORKERS ?= 2

test: check-java $(VENV)/.dev-installed
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

# Only the emulation tests (`make test` runs them too): the shipped Spark jobs under spark-submit
# on EMR's pyspark, the built Lambda functions on the managed layers' packages, `carrental run`
# from the built wheel. Their venvs are created once per machine under
# ~/.cache/carrental-emulation/ (CARRENTAL_EMULATION_CACHE).
emulation: check-java $(VENV)/.dev-installed
	$(BIN)/pytest -m emulation

# Speed, memory and cost at --scale 1 and 50 into benchmarks/results.md (not part of `make test`).
# BENCH_ARGS=--with-500 adds --scale 500 (10 M rentals: long on a laptop).
bench: check-java $(VENV)/.dev-installed
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

lint: $(VENV)/.dev-installed $(LINT_VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/carrental sync-template-sql --check
	$(LINT_VENV)/bin/cfn-lint template.yaml
	$(LINT_VENV)/bin/statelint stepfunctions/car_rental_pipeline.asl.json
	$(LINT_VENV)/bin/checkov -f template.yaml --framework cloudformation --quiet --compact --skip-download

# Build and deploy the stack of samconfig.toml's $(ENV) environment, then ship the Spark job code.
deploy: $(VENV)/.dev-installed $(SAM_DEPENDENCY)
	$(BIN)/carrental deploy-jobs --config-env $(ENV) --check-only
	$(BIN)/carrental sync-template-sql
	$(SAM) build --config-env $(ENV)
	$(SAM) deploy --config-env $(ENV)
	$(BIN)/carrental deploy-jobs --config-env $(ENV)

# Upload emr_jobs/*.py and the carrental archive to the deployed stack's artifacts bucket.
package-jobs: $(VENV)/.dev-installed
	$(BIN)/carrental deploy-jobs --config-env $(ENV)

# Copy carrental/sql/ into template.yaml (Athena named queries, the workflow's summary query) and
# the current views.
sync-template-sql: $(VENV)/.dev-installed
	$(BIN)/carrental sync-template-sql

sam-validate: $(SAM_DEPENDENCY)
	$(SAM) validate --lint --config-env $(ENV)

# `sam build` runs these (Metadata BuildMethod: makefile) in the repository with ARTIFACTS_DIR set.
build-CarrentalLayer:
	mkdir -p "$(ARTIFACTS_DIR)/python"
	cp -R carrental "$(ARTIFACTS_DIR)/python/"
	find "$(ARTIFACTS_DIR)/python" -name __pycache__ -prune -exec rm -rf {} +

build-ValidateUploadFunction:
	mkdir -p "$(ARTIFACTS_DIR)"
	cp lambdas/validate_upload/*.py "$(ARTIFACTS_DIR)/"

build-ReportFunction:
	mkdir -p "$(ARTIFACTS_DIR)"
	cp lambdas/report/*.py "$(ARTIFACTS_DIR)/"

# The scheduler's two functions share one folder (two handlers of app.py).
build-RunSchedulerStartFunction build-RunSchedulerFinishFunction:
	mkdir -p "$(ARTIFACTS_DIR)"
	cp lambdas/run_scheduler/*.py "$(ARTIFACTS_DIR)/"

build-PublishRunFunction:
	mkdir -p "$(ARTIFACTS_DIR)"
	cp lambdas/publish_run/*.py "$(ARTIFACTS_DIR)/"

# Regenerate the committed sample batch (a test checks it matches this command).
sample: $(VENV)/.runtime-installed
	$(BIN)/carrental generate --out $(SAMPLE) --scale 0.1 --seed 42

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null || { \
		echo "Python 3.11 or newer is required (found: $$($(PYTHON) --version 2>&1))."; \
		echo "Install it (e.g. 'sudo apt-get install python3.11 python3.11-venv' or 'brew install python@3.11')"; \
		echo "or point make at it: make PYTHON=/path/to/python3.11 ..."; \
		exit 1; }

check-java:
	@major=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1); \
	if [ -z "$$major" ] || [ "$$major" -lt 17 ]; then \
		echo "Java 17 or newer is required by Spark (found: $${major:-none})."; \
		echo "Install it: 'sudo apt-get install openjdk-17-jre-headless' (Debian/Ubuntu),"; \
		echo "'brew install openjdk@17' (macOS), or any JDK 17+ with java on PATH / JAVA_HOME set."; \
		exit 1; \
	fi

$(VENV)/bin/python: | check-python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime-installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.dev-installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.runtime-installed

$(LINT_VENV)/.installed: | check-python
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install --quiet $(LINT_TOOLS)
	@touch $@

$(SAM_VENV)/.installed: | check-python
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet $(SAM_CLI)
	@touch $@

clean:
	rm -rf $(VENV) .lake .pytest_cache .ruff_cache
	rm -rf $(LINT_VENV) $(SAM_VENV) .aws-sam
