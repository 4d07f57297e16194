# kabuild — the two front-door commands are `make demo` and `make test`.
# Both set up everything they need on a fresh Debian 12 machine (as root): Debian
# packages, the virtualenv, aarch64 emulation and two local Docker engines.

PYTHON ?= python3
VENV   ?= .venv
HOST   ?= demo
RUNS   ?= 3
KABUILD = $(VENV)/bin/kabuild
PYTEST  = $(VENV)/bin/pytest
SETUP   = bash containers/host-setup.sh

.PHONY: help setup venv host demo demo-install test test-weekly lint unit integration bench bench-kernel bench-explain publish clean

help:
	@echo "make demo               the whole chain on the self-contained demo host:"
	@echo "                        promote -> verify -> reproduce -> report -> publish"
	@echo "make demo-install       after make demo: install the demo's published package on a local board"
	@echo "                        container (real sshd + pacman; see README: Installing on a board)"
	@echo "make test               the whole test suite (unit + real Docker/makepkg/diffoscope/gpg/pacman)"
	@echo "make test-weekly        the long real-kernel cases make test leaves out (marker weekly; ~10 min)"
	@echo "make unit               only the fast unit tests (seconds, no Docker)"
	@echo "make lint               ruff and mypy (make test runs it first)"
	@echo "make bench              reproduce vs two plain docker-run builds: medians and ratio"
	@echo "make publish HOST=h     sign + publish h's packages (refused unless reproducible and in parity)"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Debian packages, binfmt for aarch64, and the two local Docker engines (the demo's nodes).
host:
	$(SETUP) all second-engine

setup: venv host

demo: setup
	$(KABUILD) promote demo
	$(KABUILD) verify demo
	$(KABUILD) reproduce demo
	$(KABUILD) publish demo
	@echo
	@echo "acceptance report: $$(readlink -f build/demo/v1.0/runs/latest)/report.html"
	$(KABUILD) status demo

# The demo board: a container with a real sshd and pacman (containers/board/), kept across runs.
demo-install: setup
	$(VENV)/bin/python tests/integration/boardsim.py up build/demo/board kabuild-demo-board aarch64 22022
	$(KABUILD) install demo --dry-run
	$(KABUILD) install demo --yes
	$(KABUILD) status demo

unit: venv
	$(PYTEST) -q tests/unit

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint setup
	$(PYTEST) tests

test-weekly: setup
	$(PYTEST) -m weekly tests/integration

bench: setup
	$(VENV)/bin/python tests/bench/reproduce_vs_plain.py --runs $(RUNS)
	$(VENV)/bin/python tests/bench/kernel_reproduce_vs_plain.py --runs 1
	$(VENV)/bin/python tests/bench/explain_naive_kernel.py --runs 1

# the naive kernel: builds done -> culprits named from evidence, against what --find-culprit costs
bench-explain: setup
	$(VENV)/bin/python tests/bench/explain_naive_kernel.py --runs $(RUNS)

bench-kernel: setup
	$(VENV)/bin/python tests/bench/kernel_reproduce_vs_plain.py --runs $(RUNS)

publish: venv
	$(KABUILD) publish $(HOST)

clean:
	rm -rf build .pytest_cache .hypothesis
