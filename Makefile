# Two commands do all the set-up on a fresh machine with Python 3.11 and make:
#   make run    meta-train the built-in default (sinusoid MAML, CPU, about a minute)
#   make test   run the test suite (make test-fast: without the Ray-cluster tests; make lint: ruff;
#               make typecheck: mypy)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test test-fast lint typecheck bench bench-scaling clean

$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(INSTALLED)

run: $(INSTALLED)
	$(BIN)/distmeta train

# three pytest workers, a test file each at a time: much of a Ray test is waiting on processes
# starting, so three of them share this 2-core machine's CPUs well (whole suite here, one run after
# the other: 885 s with two workers, 782 s with three; TEST_WORKERS=0: one at a time)
TEST_WORKERS ?= 3

test: $(INSTALLED)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# everything but the tests that start Ray clusters (marked slow): about a minute here
test-fast: $(INSTALLED)
	$(BIN)/python -m pytest -m "not slow"

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy over distmeta/, as [tool.mypy] in pyproject.toml sets it
typecheck: $(INSTALLED)
	$(BIN)/mypy

bench: $(INSTALLED)
	$(BIN)/python benchmarks/engine_speed.py

bench-scaling: $(INSTALLED)
	$(BIN)/python benchmarks/scaling.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
