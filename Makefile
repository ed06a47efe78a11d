# pocprint — the README's commands. Each target installs what is missing first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
OCTO_VENV := .venv-octoprint
OCTOPRINT_VERSION := 1.11.8
# Debian packages the service and its tests need (PrusaSlicer is run as a separate program).
# fonts-dejavu-core: the device history record and label PDFs embed DejaVu Sans.
SYSTEM_PACKAGES := prusa-slicer libgl1 python3-venv fonts-dejavu-core
# orthanc (PACS), slapd + ldap-utils (directory), nginx (TLS in front): real peers the tests start themselves.
TEST_SYSTEM_PACKAGES := chromium fonts-dejavu-core orthanc slapd ldap-utils nginx redis-server
BENCH_SYSTEM_PACKAGES := admesh
# `make run HOST=0.0.0.0` serves the tablets on the lab network (default: this machine only).
HOST ?= 127.0.0.1
PORT ?= 8080


.PHONY: vendor-axe
.PHONY: run test bench bench-spine bench-mesh bench-intake bench-fleet bench-trace bench-faults bench-planning lint format apt system-deps test-system-deps bench-system-deps clean-demo

run: $(VENV)/.installed $(OCTO_VENV)/.installed system-deps
	$(PY) -m pocprint.cli demo run --host $(HOST) --port $(PORT)

test: $(VENV)/.installed $(OCTO_VENV)/.installed system-deps test-system-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

bench: bench-spine bench-mesh bench-intake bench-fleet bench-trace bench-faults bench-planning

bench-spine: $(VENV)/.installed system-deps
	$(PY) -m bench.spine

bench-trace: $(VENV)/.installed system-deps
	$(PY) -m bench.trace

# Lead-time forecast back-test on a generated year of cases (bench/planning.py states the
# distributions): median absolute error and coverage of the 90 % bound.
bench-planning: $(VENV)/.installed
	$(PY) -m bench.planning

# The kill-point suite on a real OctoPrint and PrusaSlicer; PostgreSQL too when
# POCPRINT_TEST_DATABASE_URL is set.
bench-faults: $(VENV)/.installed $(OCTO_VENV)/.installed system-deps
	$(PY) -m bench.faults

bench-mesh: $(VENV)/.installed system-deps bench-system-deps
	$(PY) -m bench.mesh

# Damaged anatomy with ground truth (issue 15): false alarms, silent passes, unit questions.
bench-intake: $(VENV)/.installed system-deps
	$(PY) -m bench.damaged

# 200 simulated printers (bench/octoprint_loadgen.py) and a real OctoPrint; PostgreSQL too
# when POCPRINT_TEST_DATABASE_URL is set.
bench-fleet: $(VENV)/.installed $(OCTO_VENV)/.installed system-deps
	$(PY) -m bench.fleet

# Celery scale-out: 1 vs 2 worker processes, added latency per step, dispatcher takeover.
# Needs POCPRINT_TEST_DATABASE_URL (PostgreSQL) and redis-server (test-system-deps).
bench-scale: $(VENV)/.installed system-deps test-system-deps
	$(PY) -m bench.scale

lint:
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# axe-core for the accessibility tests, from the npm registry, pinned (tests/vendor/axe-core).
AXE_VERSION := 4.10.3
vendor-axe:
	tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent axe-core@$(AXE_VERSION) && tar xzf axe-core-$(AXE_VERSION).tgz && \
	cp package/axe.min.js package/LICENSE package/LICENSE-3RD-PARTY.txt $(CURDIR)/tests/vendor/axe-core/ && rm -rf $$tmp

format:
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { $(MAKE) --no-print-directory apt PKGS=python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# OctoPrint runs the demo printers and the end-to-end tests; it pins an older Flask,
# so it lives in its own virtualenv and pocprint talks to it only over HTTP.
$(OCTO_VENV)/.installed:
	@test -x $(OCTO_VENV)/bin/python || $(PYTHON) -m venv $(OCTO_VENV)
	$(OCTO_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(OCTO_VENV)/bin/python -m pip install --quiet 'octoprint==$(OCTOPRINT_VERSION)'
	touch $@

system-deps:
	@$(MAKE) --no-print-directory apt PKGS="$(SYSTEM_PACKAGES)"

test-system-deps:
	@$(MAKE) --no-print-directory apt PKGS="$(TEST_SYSTEM_PACKAGES)"

bench-system-deps:
	@$(MAKE) --no-print-directory apt PKGS="$(BENCH_SYSTEM_PACKAGES)"

# Installs the Debian packages in PKGS that are missing: as root directly, else with sudo,
# else stops with the command to run.
apt:
	@missing=""; for p in $(PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	echo "Installing Debian packages:$$missing"; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else \
	  echo "pocprint needs these Debian packages:$$missing. Run as root: apt-get install -y$$missing" >&2; exit 1; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing

clean-demo:
	rm -rf var/demo
