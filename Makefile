# Two commands do all set-up on a fresh machine:  make demo   and   make test
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup browser demo test lint widgets

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

# Debian's Chromium for the widget tests in a real browser, installed when missing and apt-get can
# (as root); elsewhere the browser tests are skipped, with a note saying so
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	  fonts-liberation >/dev/null; } || echo "note: no Chromium; the browser tests will be skipped"

test: lint browser
	$(PY) -m pytest $(PYTEST_ARGS)

# the widget tests alone: Python, the front end in Chromium, and JupyterLab end to end
widgets: setup browser
	$(PY) -m pytest -q tests/widgets
