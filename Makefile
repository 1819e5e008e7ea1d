# `make demo` and `make test` each do all the set-up on a fresh clone (a virtualenv in .venv).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
, := ,

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,motia]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/motia-state demo

lint: $(BIN)/.installed
	$(BIN)/ruff check motia_state tests examples
	$(BIN)/ruff format --check motia_state tests examples
	$(BIN)/mypy --strict motia_state

test: lint
	$(BIN)/pytest -q

# The benchmark harness (bench/, BENCHMARKS.md): motia-state vs the raw drivers. BENCH_ARGS=--quick for a short run.
$(BIN)/.installed-bench: $(BIN)/.installed pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,motia,bench]'
	touch $@

# Each step runs even when one before it reported an error (the "-"), so that the last one, bench.targets, always
# lists every target: met, missed, or not run.
bench: $(BIN)/.installed $(BIN)/.installed-bench
	-$(BIN)/python -m bench --no-scale $(BENCH_ARGS)
	-$(BIN)/python -m bench.scale $(if $(findstring --quick,$(BENCH_ARGS)),--quick --rows 20000$(,)50000$(,)100000,)  # 1M, 3M, 10M rows (~20 min)
	-$(BIN)/python -m bench.hotkey $(if $(findstring --quick,$(BENCH_ARGS)),--quick,)  # 500 tasks / 8 processes on one key
	-$(BIN)/python -m bench.feed $(BENCH_ARGS)  # the change feed: on/off cost, delivery delay, keep-up rate
	-$(BIN)/python -m bench.triggers $(if $(findstring --quick,$(BENCH_ARGS)),--quick,)  # triggers: changes/s, delay
	-$(BIN)/python -m bench.cli_call  # one reading CLI call, wall time (target < 0.15 s); table in BENCHMARKS.md
	-$(BIN)/python -m bench.ui  # the state browser on 100,000 scopes: each page's time over HTTP and in Chromium
	$(BIN)/python -m bench.targets  # every target above, met or missed, in one table: bench/results/targets.md

clean:
	rm -rf $(VENV) .motia .pytest_cache .mypy_cache .ruff_cache
