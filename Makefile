# Two commands do all set-up on a fresh machine:
#   make demo   -> creates .venv, installs descentlab, runs `descentlab demo`
#   make test   -> creates .venv, installs descentlab[dev], runs ruff and the tests
PYTHON ?= python3
VENV ?= .venv
TORCH_CONSTRAINT ?= -c constraints.txt
BIN = $(VENV)/bin

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_CONSTRAINT) -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/descentlab demo

test: $(BIN)/.installed
	$(BIN)/ruff check descentlab tests benchmarks
	$(BIN)/python -m pytest -q

.PHONY: install demo test
