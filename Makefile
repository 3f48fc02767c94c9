# Two commands for a new user: `make demo` (install + lixiao demo) and `make test` (install + linters + all tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/lixiao demo

lint: $(STAMP)
	$(BIN)/ruff check .
	@# mypy sees the installed layout (lixiao.core → core/) through a link farm
	mkdir -p .typecheck/lixiao
	for p in core workbooks sync reports; do ln -sfn ../../$$p .typecheck/lixiao/$$p; done
	cd .typecheck && ../$(BIN)/mypy --config-file ../pyproject.toml -p lixiao

test: lint
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow" -q

clean:
	rm -rf $(VENV) .typecheck .pytest_cache .mypy_cache .ruff_cache lixiao-demo
