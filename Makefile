# qtagent: the single entry point. `make demo` and `make test` set up what is missing first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
QTAGENT := $(VENV)/bin/qtagent
PYTEST_LAB := python -m pytest -p no:cacheprovider -p no:hypothesispytest -o addopts= --timeout=1800

.PHONY: help setup demo test test-unit test-lab lint fmt typecheck bench bench-lab clean

help:
	@echo "make demo   - set up, boot the emulated SR-IOV lab and run the end-to-end demo"
	@echo "make test   - set up, then lint, type-check, unit tests and the lab tests (real kernel)"
	@echo "make setup  - install system packages, the lab kernel, netdevsim and the venv (idempotent)"
	@echo "make bench  - benchmarks (host and lab), each printing its ratio to a baseline"

setup:
	@bash scripts/setup.sh

demo: setup
	$(QTAGENT) lab run -- $(PY) -m qtagent.lab.demo

test: setup lint typecheck test-unit test-lab

lint:
	$(VENV)/bin/ruff check qtagent tests bench
	$(VENV)/bin/ruff format --check qtagent tests bench

fmt:
	$(VENV)/bin/ruff format qtagent tests bench
	$(VENV)/bin/ruff check --fix qtagent tests bench

typecheck:
	$(VENV)/bin/mypy

test-unit:
	$(PY) -m pytest tests/unit -q

# One guest boot for the whole lab tier (a boot costs about a minute under TCG), and a
# short second one without ACS on the root ports for FIELD-CASES C7 on the real kernel.
test-lab:
	$(QTAGENT) lab run -- $(PYTEST_LAB) tests/lab --ignore=tests/lab/test_iommu_noacs_lab.py -v -rs
	$(QTAGENT) lab run --no-acs -- $(PYTEST_LAB) tests/lab/test_iommu_noacs_lab.py -v -rs

bench:
	$(PY) bench/bench_enumerate.py
	$(PY) bench/bench_reconcile.py
	$(QTAGENT) lab run -- sh -c "$(PY) bench/bench_vf_knobs.py && $(PY) bench/bench_event_latency.py"

clean:
	rm -rf lab-out .pytest_cache .mypy_cache .ruff_cache
