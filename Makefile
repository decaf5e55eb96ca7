# `make test` and `make demo` set up .venv on first use (Python 3.12 preferred, 3.11 supported).
SHELL := /bin/bash
VENV := .venv
PYTHON_CANDIDATES := python3.12 $(wildcard /root/.pyenv/versions/3.12*/bin/python3.12) $(wildcard /usr/bin/python3.12) python3.11 python3
BASE_PYTHON := $(shell for p in $(PYTHON_CANDIDATES); do $$p -c 'import sys; assert sys.version_info >= (3, 11)' >/dev/null 2>&1 && { echo $$p; break; }; done)
export MUJOCO_GL ?= egl
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.cache/jax

.PHONY: venv test test-slow demo bench clean

$(VENV)/.installed: setup.py
	@test -n "$(BASE_PYTHON)" || { echo "error: no python >= 3.11 found (tried: $(PYTHON_CANDIDATES))"; exit 1; }
	test -x $(VENV)/bin/python || $(BASE_PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Two workers, a file each at a time: most of the suite is single-threaded XLA compilation.
test: venv
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile tests

test-slow: venv
	$(VENV)/bin/pip install -q -e '.[test,distributed]'
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile -m slow tests

demo: venv
	$(VENV)/bin/python experiments/cascade.py --config=experiments/configs/cascade.py:cpu --workdir=runs/demo

bench: venv
	$(VENV)/bin/python benchmarks/world_model_step.py --out=benchmarks/results
	$(VENV)/bin/python benchmarks/conv_layers.py --out=benchmarks/results
	$(VENV)/bin/python benchmarks/compile_time.py --out=benchmarks/results
	$(VENV)/bin/python benchmarks/population.py --out=benchmarks/results
	$(VENV)/bin/python benchmarks/planner.py --out=benchmarks/results
	$(VENV)/bin/python benchmarks/reversibility.py --out=benchmarks/results
	$(VENV)/bin/python benchmarks/deployment.py --out=benchmarks/results
	$(VENV)/bin/pip install -q -e '.[distributed]'
	$(VENV)/bin/python benchmarks/async_runner.py --out=benchmarks/results

clean:
	rm -rf $(VENV) .cache runs
