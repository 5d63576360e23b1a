# The two commands of the README. Each creates .venv, installs PyTorch 2.13.0 (a CPU wheel is
# used where one lies on disk) and nasopt with its extras, then runs the job.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run quick test setup lint clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/nasopt run studies/quickstart.toml

quick: $(STAMP)
	$(VENV)/bin/nasopt run studies/quickstart.toml --quick

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	sh scripts/install-chromium.sh
	$(VENV)/bin/python -m pytest -q
	$(VENV)/bin/python -m pytest -q --doctest-modules nasopt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
