# gan-kit: `make demo` trains a short MNIST GAN and scores it, `make test` runs every test.
# Both create .venv and install the kit into it (editable) on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DEMO_OUT ?= runs/demo-mnist
# A budget in steps, not epochs: the same work whether the full MNIST or only the bundled 3,000-image sample
# is found (31 whole passes over the sample, or 30 epochs of 47 steps cut from passes over the full set;
# see gan_lib.runs.plan_step_budget). --metrics-every 0: the one measurement is `evaluate`'s.
DEMO_ARGS ?= --steps 1400 --batch-size 64 --metrics-every 0

.PHONY: setup demo test test-unit test-notebooks lint format clean check-oldest-tf

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: setup
	$(BIN)/gan-lib train mnist $(DEMO_ARGS) --out $(DEMO_OUT)
	$(BIN)/gan-lib evaluate $(DEMO_OUT)
	@echo "The pictures: $(DEMO_OUT)/progress.gif (every epoch's grid), $(DEMO_OUT)/losses.png (the curves),"
	@echo "              $(DEMO_OUT)/grids/ (one PNG per epoch; the last is the final grid)"

# Two pytest-xdist workers: most of a test's time is one core's (imports, tracing, subprocesses). --dist loadfile
# keeps each test module in one worker, so a module- or session-scoped fixture (the graded submissions folder,
# the built wheel) runs once. TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 2

test-unit: setup
	$(BIN)/python -m pytest tests -q -n $(TEST_WORKERS) --dist loadfile
	$(BIN)/python -m pytest --doctest-glob="*.md" docs -q

test-notebooks: setup
	GAN_LIB_SMOKE=1 $(BIN)/python -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=600 notebooks -q \
		-n $(TEST_WORKERS) --dist loadfile

test: lint test-unit test-notebooks

# The oldest TensorFlow and Keras that pyproject.toml claims, in a venv of their own (.venv-oldest-tf, 1.7 GB
# installed once from the package registry), on a focused subset of the tests. .ci/run runs it after `make test`.
check-oldest-tf:
	PYTHON=$(PYTHON) scripts/check_oldest_tf.sh

lint: setup
	$(BIN)/ruff check gan_lib tests scripts benchmarks notebooks
	$(BIN)/ruff format --check gan_lib tests scripts benchmarks

format: setup
	$(BIN)/ruff check --fix gan_lib tests scripts benchmarks notebooks
	$(BIN)/ruff format gan_lib tests scripts benchmarks

clean:
	rm -rf $(VENV) .venv-oldest-tf runs build *.egg-info .pytest_cache
