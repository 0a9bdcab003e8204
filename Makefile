# make demo : the whole curriculum on the embedded tiny GPT-OSS, on CPU
# make test : everything CI runs (.ci/run calls it)
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)

.PHONY: install demo test lint clean-run

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU machines: take the torch file already on disk first; otherwise pip would fetch a multi-GB CUDA build.
	$(BIN)/python -c "import torch" 2>/dev/null || \
	  if command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/pip install -q "torch>=2.9,<2.15"; \
	  else $(BIN)/pip install -q torch==2.13.0; fi
	$(BIN)/pip install -q -e ".[dev,gguf]"
	# GGUF converter: llama.cpp's convert_hf_to_gguf.py + conversion/ + gguf-py from the pinned llama-cpp-python
	# 0.3.36 sdist (its wheel ships none; PyPI's gguf has no converter), fetched once and unpacked (2 MB) into
	# ~/.cache/gpt_oss_pipeline/. Offline: LLAMA_CPP_PYTHON_SDIST=/path/llama_cpp_python-0.3.36.tar.gz
	$(BIN)/python -c "from pipeline_lib.gguf_export import resolve_llama_cpp; print('gguf converter:', resolve_llama_cpp().convert_script)"
	touch $@

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/run_tui_pipeline.sh --tiny

test: lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q tests

lint: install
	$(BIN)/ruff check pipeline_lib scripts tests

# Every run output of the default workdir: checkpoints/, logs/ (run records included), the quick test's state and
# data prep's folder (its name from pipeline_lib/phases.py) with its stale copies; data/samples, data/seed_corpus and
# generated mutation tasks (data/<language>/grpo) stay.
clean-run:
	eval "$$($(BIN)/python -m pipeline_lib.orchestrate paths --workdir $(CURDIR) --model none --tiny)" && \
	  rm -rf checkpoints/* logs/* logs/.[!.]* quick-test "$$DATA_DIR" "$$DATA_DIR".stale-*
	touch checkpoints/.gitkeep logs/.gitkeep
