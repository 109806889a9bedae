# Two commands do all set-up on a fresh machine:  make demo   and   make test
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test lint widgets

setup: $(VENV)/.installed

# constraints.txt pins torch to the CPU build these machines hold; pyproject.toml stays loose
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	touch $@

demo: setup
	$(PY) -m nbvene.demo --out out/causal_trace.html

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

# the widget tests alone: Python, the front end in Chromium, and JupyterLab end to end
# (needs Debian's Chromium: apt-get install chromium)
widgets: setup
	$(PY) -m pytest -q tests/widgets
