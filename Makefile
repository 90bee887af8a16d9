# dlrun: `make train` installs and trains the default config; `make test` installs and runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
PYTEST_ARGS ?=
# pytest-xdist processes: on 2 cores the suite took 8.6 min in 2 of them, 15.4 min in one
PYTEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help install install-dev docs docs-serve docs-numbers train test test-fast durations fuzz lint tb bench gpu-check reproduce clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# two installs into one .venv: what running dlrun needs (make train), then the test, lint and docs tools
$(BIN)/dlrun: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install torch==$(TORCH_VERSION)
	$(BIN)/pip install -e .
	@touch $@

$(VENV)/.dev: $(BIN)/dlrun
	$(BIN)/pip install -e '.[dev]'
	@touch $@

install: $(BIN)/dlrun  ## create .venv with the pinned torch (TORCH_VERSION, default 2.13.0) and dlrun, editable: what running needs

install-dev: $(VENV)/.dev  ## install, then add the test, lint and documentation tools (dlrun[dev])

train: install  ## install (no test or lint tools), then train the default config (an MLP on digits)
	$(BIN)/dlrun train

test: install-dev  ## install, then run the whole test suite, as CI does (PYTEST_WORKERS processes, default 2)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --durations=15 $(PYTEST_ARGS)

test-fast: install-dev  ## the tests under 1 s each in the last recorded run (no `slow` marker): the edit-test loop
	$(BIN)/pytest -n $(PYTEST_WORKERS) -m "not slow" --durations=5 $(PYTEST_ARGS)

durations: install-dev  ## run the whole suite and record each test's seconds in tests/durations.json (the slow tier)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --record-durations tests/durations.json $(PYTEST_ARGS)

fuzz: install-dev  ## property tests with fresh random inputs (FUZZ_EXAMPLES per test, default 5000)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -n $(PYTEST_WORKERS) tests/test_properties.py $(PYTEST_ARGS)

lint: install-dev  ## ruff
	$(BIN)/ruff check dlrun tests experiments/plugins docs/hooks.py docs/numbers/make.py
	$(BIN)/ruff format --check dlrun tests experiments/plugins docs/hooks.py docs/numbers/make.py

docs: install-dev  ## build the documentation site into site/ (mkdocs, --strict: a broken link or anchor fails)
	$(BIN)/mkdocs build --strict

docs-serve: install-dev  ## the documentation site on http://127.0.0.1:8000, rebuilt as pages change
	$(BIN)/mkdocs serve

docs-numbers: install  ## rerun the commands whose results the docs quote, into docs/numbers/*.md (NAMES=first-run xor ...: some)
	$(BIN)/python docs/numbers/make.py $(NAMES)

tb: install  ## TensorBoard on runs/
	$(BIN)/tensorboard --logdir runs

bench: install  ## dlrun against hand-written loops and scripts: every ratio in about 2 minutes (FULL=1: the long cases)
	$(BIN)/python -m dlrun.bench $(if $(FULL),--full --out docs/numbers/bench-full.md,--out docs/numbers/bench.md)

gpu-check: install  ## on a CUDA machine (not in make test): resume, ResNet-20 images/s by precision, compile, layout; groups; torchrun
	$(BIN)/python -m dlrun.gpucheck

reproduce: install  ## run every claim in experiments/ at its seeds and write experiments/report/report.md
	$(BIN)/dlrun experiment report --rerun --out experiments/report

clean:  ## remove .venv and caches (runs/ stays)
	rm -rf $(VENV) .pytest_cache .ruff_cache site
