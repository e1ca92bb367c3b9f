# The README's two commands: `make demo` (install + generate with the bundled model)
# and `make test` (install + lint + tests). Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision pinned to the builds this project is tested with; override for your platform.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= dev

.PHONY: setup demo test test-compile lint bench clean

$(VENV)/.installed-$(EXTRAS): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

setup: $(VENV)/.installed-$(EXTRAS)

demo: setup
	$(VENV)/bin/attngan generate "a small red circle on the left" --seed 0 --out outputs/demo

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

test: setup lint
	$(PY) -m pytest -q -m "not compile"

# the compiled-step tests that make test leaves out (one compiled case stays in it)
test-compile: setup
	$(PY) -m pytest -q -m compile

# `make bench` (full, 15-25 min) or `make bench BENCH_ARGS=--quick` (under 2 min).
BENCH_ARGS ?=
bench: setup
	$(PY) benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache .mypy_cache
