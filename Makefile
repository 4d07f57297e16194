# kabuild — the two front-door commands are `make demo` and `make test`.
# Both set up everything they need on a fresh Debian 12 machine (run as root):
# Debian packages, the virtualenv, a Docker engine and aarch64 emulation.

PYTHON ?= python3
VENV   ?= .venv
HOST   ?= demo
KABUILD = $(VENV)/bin/kabuild
PYTEST  = $(VENV)/bin/pytest
SETUP   = bash containers/host-setup.sh

.PHONY: help setup venv host demo test unit integration bench publish clean

help:
	@echo "make demo      promote, verify and show the self-contained demo host"
	@echo "make test      the whole test suite (unit + Docker integration)"
	@echo "make unit      only the fast unit tests"
	@echo "make bench     benchmarks (medians and ratios, never asserted)"
	@echo "make publish HOST=<host>   sign + publish HOST's reproducible packages"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Debian packages, binfmt for aarch64, and the Docker engine(s).
host:
	$(SETUP) all

setup: venv host

demo: setup
	$(KABUILD) promote demo
	$(KABUILD) verify demo
	$(KABUILD) status demo

unit: venv
	$(PYTEST) -q tests/unit

test: setup
	$(PYTEST) tests

publish: venv
	$(KABUILD) publish $(HOST)

clean:
	rm -rf build .pytest_cache .hypothesis
