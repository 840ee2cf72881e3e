# gan-kit: `make demo` trains a short MNIST GAN, `make test` runs every test.
# Both create .venv and install the kit into it (editable) on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DEMO_OUT ?= runs/demo-mnist
DEMO_ARGS ?= --epochs 5 --limit 12800

.PHONY: setup demo test test-unit test-notebooks lint format clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: setup
	$(BIN)/gan-lib train mnist $(DEMO_ARGS) --out $(DEMO_OUT)
	@echo "Open $(DEMO_OUT)/progress.gif and $(DEMO_OUT)/losses.png"

test-unit: setup
	$(BIN)/python -m pytest tests -q
	$(BIN)/python -m pytest --doctest-glob="*.md" docs -q

test-notebooks: setup
	GAN_LIB_SMOKE=1 $(BIN)/python -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=600 notebooks -q

test: lint test-unit test-notebooks

lint: setup
	$(BIN)/ruff check gan_lib tests scripts notebooks
	$(BIN)/ruff format --check gan_lib tests scripts

format: setup
	$(BIN)/ruff check --fix gan_lib tests scripts notebooks
	$(BIN)/ruff format gan_lib tests scripts

clean:
	rm -rf $(VENV) runs build *.egg-info .pytest_cache
