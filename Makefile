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
# pip's and apt's own output goes here; a failing step names it (containers/host-setup.sh does the same)
SETUP_LOG = build/setup.log
QUIETLY = bash containers/quietly.sh $(SETUP_LOG)

.PHONY: help setup venv host demo demo-install test test-weekly lint unit integration bench bench-memory bench-kernel bench-explain publish clean

help:
	@echo "make demo               the whole chain on the self-contained demo host:"
	@echo "                        promote -> verify -> reproduce -> report -> publish"
	@echo "make demo-install       after make demo: install the demo's published package on a local board"
	@echo "                        container (real sshd + pacman; see README: Installing on a board)"
	@echo "make test               the whole test suite (unit + real Docker/makepkg/diffoscope/gpg/pacman)"
	@echo "make test-weekly        the long real-kernel cases make test leaves out (marker weekly; ~10 min)"
	@echo "make unit               only the fast unit tests (seconds, no Docker)"
	@echo "make lint               ruff and mypy (make test runs it first)"
	@echo "make bench              document memory, then reproduce vs two plain docker-run builds: medians and ratio"
	@echo "make bench-memory       only the memory kabuild needs to read damaged documents (seconds)"
	@echo "make publish HOST=h     sign + publish h's packages (refused unless reproducible and in parity)"

$(VENV)/.installed: pyproject.toml
	@echo "kabuild-setup: virtualenv $(VENV) with kabuild and its test tools (output in $(SETUP_LOG))"
	@$(QUIETLY) "python -m venv" $(PYTHON) -m venv $(VENV)
	@$(QUIETLY) "pip install --upgrade pip" $(VENV)/bin/pip install --upgrade pip
	@$(QUIETLY) "pip install -e .[test]" $(VENV)/bin/pip install -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

# Debian packages, binfmt for aarch64, and the two local Docker engines (the demo's nodes).
host:
	@$(SETUP) all second-engine

setup: venv host

demo: setup
	@$(KABUILD) promote demo
	@$(KABUILD) verify demo
	@$(KABUILD) reproduce demo
	@$(KABUILD) publish demo
	@echo
	@echo "acceptance report: $$(readlink -f build/demo/v1.0/runs/latest)/report.html"
	@$(KABUILD) status demo
	@echo
	@echo "next: 'make demo-install' installs the published package on a local board stand-in (real sshd and"
	@echo "pacman); 'kabuild report demo --format md' shows the report again; README: The model, Commands."

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

# Fast checks first (lint, then the unit tests: seconds), so they fail before the engines start and
# the integration tests (real engines, makepkg, diffoscope, gpg, pacman) run.  The unit tests need the
# host's tools (patch, gpg, the docker CLI a manifest's power_cycle names), hence deps before them.
test: lint
	@$(SETUP) deps
	$(PYTEST) -q tests/unit
	@$(SETUP) binfmt engine second-engine
	$(PYTEST) -n 2 --dist loadscope -m "not serial and not weekly" tests/integration
	$(PYTEST) -m serial tests/integration

test-weekly: setup
	$(PYTEST) -m weekly tests/integration

bench: setup
	$(VENV)/bin/python tests/bench/document_memory.py
	$(VENV)/bin/python tests/bench/reproduce_vs_plain.py --runs $(RUNS)
	$(VENV)/bin/python tests/bench/ship_to_ssh_node.py --runs $(RUNS)
	$(VENV)/bin/python tests/bench/kernel_reproduce_vs_plain.py --runs 1
	$(VENV)/bin/python tests/bench/explain_naive_kernel.py --runs 1

# the naive kernel: builds done -> culprits named from evidence, against what --find-culprit costs
bench-explain: setup
	$(VENV)/bin/python tests/bench/explain_naive_kernel.py --runs $(RUNS)

bench-memory: venv
	$(VENV)/bin/python tests/bench/document_memory.py

bench-kernel: setup
	$(VENV)/bin/python tests/bench/kernel_reproduce_vs_plain.py --runs $(RUNS)

publish: venv
	$(KABUILD) publish $(HOST)

clean:
	rm -rf build .pytest_cache .hypothesis
