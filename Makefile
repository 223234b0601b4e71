# Two commands do all set-up on a fresh machine:
#   make demo   install into .venv, meta-train MAML on point-nav, show the adaptation curve
#   make test   install into .venv (with test tools) and run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint install bench

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,all]"
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
