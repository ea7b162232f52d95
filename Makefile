# Two commands from a fresh clone: `make demo` runs the research job on simulated ticks,
# `make test` runs the test suite. Both create the virtual environment they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tickflow-installed
BENCH_STAMP := $(VENV)/.tickflow-bench-installed
ROWS   ?= 2000000

.PHONY: demo test bench docs clean mutate

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tickflow needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

# the peers the benchmarks compare against (polars, vectorbt, ...) are not needed to run or test
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	@touch $(BENCH_STAMP)

data/sim_ticks.parquet: | $(STAMP)
	$(BIN)/run-job simulate -o $@ --rows $(ROWS) --symbols 14 --seed 7

demo: $(STAMP) data/sim_ticks.parquet
	$(BIN)/run-job jobs/research.yaml

test: $(STAMP)
	$(BIN)/python -m pytest

# planted bugs, one at a time, in a scratch copy: a survivor is a gap in the tests (not in `test`)
mutate: $(STAMP)
	$(BIN)/python scripts/mutate.py

bench: $(BENCH_STAMP)
	$(BIN)/python bench/research_vs_peers.py

docs: $(STAMP)
	$(BIN)/run-job docs --out docs

clean:
	rm -rf $(VENV) data out .pytest_cache .hypothesis
