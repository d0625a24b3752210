# The two commands that matter: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SAMPLE := data/sample

.PHONY: run test lint check-java check-python sample clean

run: check-java $(VENV)/.runtime-installed
	@if ! $(BIN)/carrental run --help >/dev/null 2>&1; then \
		echo "The local pipeline ('carrental run') is not built yet: see the 'Local pipeline' issue."; \
		echo "Available now: $(BIN)/carrental generate --out DIR, $(BIN)/carrental contracts"; \
		exit 1; \
	fi
	$(BIN)/carrental run --input $(SAMPLE)

test: check-java $(VENV)/.dev-installed
	$(BIN)/pytest

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

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

clean:
	rm -rf $(VENV) .lake .pytest_cache .ruff_cache
