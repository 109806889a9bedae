# Two commands do all set-up on a fresh machine:  make demo   and   make test
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# independent tests on every core (pytest-xdist); WORKERS=0 runs them in this process
WORKERS ?= auto
QUICK := not smollm2 and not notebooks and not lab

.PHONY: setup browser demo test check lint widgets package minimum fuzz

setup: $(VENV)/.installed

# constraints.txt pins torch to the CPU build these machines hold; pyproject.toml stays loose
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	touch $@

demo: setup
	$(PY) -m nbvene.demo --out out/causal_trace.html

# ruff, then the layers: import-linter's contracts (pyproject.toml) and the import graph's
# cycles (tools/import_graph.py; without -q it prints every edge between the subpackages)
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) tools/import_graph.py -q

# Debian's Chromium for the widget tests in a real browser, installed when missing and apt-get can
# (as root); elsewhere the browser tests are skipped, with a note saying so
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	  fonts-liberation >/dev/null; } || echo "note: no Chromium; the browser tests will be skipped"

# the whole suite: what .ci/run runs
test: lint browser
	$(PY) -m pytest -n $(WORKERS) $(PYTEST_ARGS)

# a contributor's quick check: lint and the tests on tiny models (a few minutes on 2 cores)
check: lint
	$(PY) -m pytest -n $(WORKERS) -q -m "$(QUICK)" $(PYTEST_ARGS)

# the bad-input fuzz test at 10,000 specs (the suite runs 2,000): only NbveneError, model unchanged
fuzz: setup
	NBVENE_FUZZ_EXAMPLES=10000 $(PY) -m pytest -q -p no:cacheprovider tests/hardening/test_fuzz.py

# what `pip install nbvene` gives a new user, and the Binder image build, each in a fresh venv
package: setup
	bash packaging/check.sh
	bash packaging/binder.sh

# the tiny-model tests on the lowest versions pyproject.toml claims (constraints-min.txt)
minimum: .venv-min/.installed
	.venv-min/bin/python -m pytest -n $(WORKERS) -q -m "$(QUICK)" -p no:cacheprovider $(PYTEST_ARGS)

.venv-min/.installed: pyproject.toml constraints-min.txt
	python3 -m venv .venv-min
	.venv-min/bin/python -m pip install -q -c constraints-min.txt ".[test]"
	touch $@

# the widget tests alone: Python, the front end in Chromium, and JupyterLab end to end
widgets: setup browser
	$(PY) -m pytest -q tests/widgets
