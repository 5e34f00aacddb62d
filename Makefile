# The README's two commands: `make demo` (install + whole pipeline on the embedded default) and
# `make test` (install + tests). Everything else here is a helper.
PYTHON ?= python3
VENV ?= .venv
# A CPU build of torch lies on this machine's disk; an unpinned torch pulls a multi-GB CUDA build.
# On a GPU machine: make install TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128'
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
CONFIG ?= conf/demo.yaml
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# MLflow's telemetry honours "true", not "1"
export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90
# pip says only what went wrong: no version nag, no root-user notice, no progress bars
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_ROOT_USER_ACTION := ignore
export PIP_PROGRESS_BAR := off

.PHONY: install demo test lint ui serve clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: install
	$(BIN)/gristmill run $(CONFIG)

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

ui: install
	$(BIN)/gristmill ui $(CONFIG)

serve: install
	$(BIN)/gristmill serve $(CONFIG)

clean:
	rm -rf workspace
