# Two commands do all set-up on a fresh machine:
#   make demo   install into .venv, meta-train MAML on point-nav, show the adaptation curve
#   make test   install into .venv (with test tools) and run the test suite
# Both install the tested set of dependencies pinned in constraints.txt. Two more:
#   make lock         regenerate constraints.txt from a fresh install of the newest releases
#   make test-latest  run the suite against the newest releases (fresh .venv-latest, no pins)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The extras that `make install` (so `make demo`, `make test` and CI's .ci/run) installs,
# and that `make lock` pins. Add an extra here when CI needs it, then run `make lock`.
EXTRAS ?= test,all
CONSTRAINTS := constraints.txt

.PHONY: demo test lint install bench lock test-latest

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade -c $(CONSTRAINTS) pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/adaptrl demo

test: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m mypy
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m mypy

# A fresh virtual environment gets the newest releases that pyproject.toml allows, with
# $(EXTRAS); `pip freeze` writes them down (pip included, adaptrl itself left out).
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet ".[$(EXTRAS)]"
	{ echo "# The tested set of dependencies that \`make install\` (demo, test, CI) installs."; \
	  echo "# Regenerate with \`make lock\` (extras: $(EXTRAS)); Python $$(.venv-lock/bin/python -c 'import platform; print(platform.python_version(), platform.machine())')."; \
	  .venv-lock/bin/python -m pip freeze --all --exclude adaptrl --exclude setuptools --exclude wheel; \
	} > $(CONSTRAINTS).tmp
	mv $(CONSTRAINTS).tmp $(CONSTRAINTS)
	rm -rf .venv-lock

# The suite against the newest releases, without constraints.txt: what `make lock` would
# bring. Leaves .venv alone.
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet --upgrade pip
	.venv-latest/bin/python -m pip install --quiet --upgrade -e ".[$(EXTRAS)]"
	.venv-latest/bin/ruff check src tests benchmarks
	.venv-latest/bin/python -m mypy
	.venv-latest/bin/python -m pytest
