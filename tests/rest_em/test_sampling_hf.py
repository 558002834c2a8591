"""The transformers E-step sampler on the tiny model: n, max_tokens, stop strings, determinism, order."""

from __future__ import annotations

import pytest

from rest_em.sampling import Completion, SampleParams, make_sampler
from rest_em.sampling.params import truncate_at_stop


@pytest.fixture(scope="module")
def sampler(tiny_model_dir):
    s = make_sampler(tiny_model_dir, backend="hf", batch_size=3)
    yield s
    s.close()


def test_sampler_reports_backend(sampler):
    assert sampler.backend == "hf"


def test_n_completions_per_prompt_in_prompt_order(sampler, chat_prompts, tiny_model_dir):
    params = SampleParams(n=3, temperature=1.0, top_k=0, max_tokens=8, seed=1)
    out = sampler.generate(chat_prompts, params)
    assert len(out) == len(chat_prompts)
    assert all(len(comps) == 3 for comps in out)
    assert all(isinstance(c, Completion) for comps in out for c in comps)
    # Prompts are sorted by length internally: results must come back in prompt order. With one
    # prompt per generate call there is no padding, so greedy outputs are exactly comparable.
    one_by_one = make_sampler(tiny_model_dir, backend="hf", batch_size=1)
    greedy = SampleParams(n=1, temperature=0.0, max_tokens=8)
    together = one_by_one.generate(chat_prompts, greedy)
    single = [one_by_one.generate([p], greedy)[0] for p in chat_prompts]
    one_by_one.close()
    assert together == single
    assert len({cs[0].text for cs in together}) > 1, "distinct prompts should give distinct greedy texts"


def test_max_tokens_and_length_finish(sampler, chat_prompts):
    params = SampleParams(n=4, temperature=1.0, top_k=40, max_tokens=5, seed=0)
    out = sampler.generate(chat_prompts, params)
    comps = [c for cs in out for c in cs]
    assert all(1 <= c.num_tokens <= 5 for c in comps)
    assert all(c.finish_reason in ("stop", "length") for c in comps)
    # A random 320-token model almost never emits EOS within 5 tokens: most rows are cut by length.
    lengths = [c for c in comps if c.finish_reason == "length"]
    assert len(lengths) >= len(comps) // 2
    assert all(c.num_tokens == 5 for c in lengths)


def test_greedy_is_deterministic_and_n_copies(sampler, chat_prompts):
    params = SampleParams(n=3, temperature=0.0, max_tokens=12)
    a = sampler.generate(chat_prompts, params)
    b = sampler.generate(chat_prompts, params)
    assert a == b
    assert all(cs[0] == cs[1] == cs[2] for cs in a)


def test_seeded_sampling_is_reproducible_and_seed_matters(sampler, chat_prompts):
    params = SampleParams(n=4, temperature=1.0, top_k=0, max_tokens=10, seed=123)
    a = sampler.generate(chat_prompts, params)
    b = sampler.generate(chat_prompts, params)
    assert a == b
    c = sampler.generate(chat_prompts, SampleParams(n=4, temperature=1.0, top_k=0, max_tokens=10, seed=124))
    assert a != c
    # Samples of one prompt differ from each other (it is sampling, not n copies of one draw).
    assert len({x.text for x in a[0]}) > 1


def test_stop_string_cuts_text_and_sets_finish_reason(sampler, chat_prompts):
    base = sampler.generate(chat_prompts[:1], SampleParams(n=1, temperature=0.0, max_tokens=24))[0][0]
    assert len(base.text) >= 6, "the tiny model should produce some text greedily"
    stop = base.text[3:6]
    first = base.text.find(stop)
    out = sampler.generate(chat_prompts[:1], SampleParams(n=2, temperature=0.0, max_tokens=24, stop=(stop,)))[0]
    for c in out:
        assert stop not in c.text
        assert c.text == base.text[:first]
        assert c.finish_reason == "stop"
        assert 1 <= c.num_tokens <= base.num_tokens


def test_stop_strings_with_sampling_never_leak(sampler, chat_prompts):
    # Single characters that a random byte-level model emits often: some rows must hit them.
    stops = ("e", "a", "\n")
    out = sampler.generate(chat_prompts, SampleParams(n=4, temperature=1.0, top_k=0, max_tokens=16, seed=7, stop=stops))
    comps = [c for cs in out for c in cs]
    assert all(not any(s in c.text for s in stops) for c in comps)
    assert all(c.num_tokens <= 16 for c in comps)
    assert any(c.finish_reason == "stop" for c in comps)


def test_empty_prompt_list_and_bad_input(sampler):
    assert sampler.generate([], SampleParams()) == []
    with pytest.raises(TypeError):
        sampler.generate("a single string", SampleParams())


def test_does_not_double_special_tokens(tiny_model_dir):
    from transformers import AutoTokenizer

    from rest_em.tokens import encode_prompt

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    ids = encode_prompt(tok, chat)
    assert ids == tok(chat, add_special_tokens=False)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>") and ids[1] != ids[0]


@pytest.mark.parametrize(
    ("text", "stop", "expected"),
    [
        ("abc STOP def", ("STOP",), ("abc ", True)),
        ("abc", ("x",), ("abc", False)),
        ("a#b$c", ("$", "#"), ("a", True)),  # the earliest stop wins, whatever its order in the tuple
        ("", ("x",), ("", False)),
    ],
)
def test_truncate_at_stop(text, stop, expected):
    assert truncate_at_stop(text, stop) == expected


def test_sample_params_validation():
    with pytest.raises(ValueError):
        SampleParams(n=0)
    with pytest.raises(ValueError):
        SampleParams(top_p=0.0)
    with pytest.raises(TypeError):
        SampleParams(stop="###")  # a bare string would be split into characters by some engines
    assert SampleParams(stop=["a", "b"]).stop == ("a", "b")
    assert SampleParams(temperature=0.0).greedy


def test_unknown_backend_is_an_error(tiny_model_dir):
    with pytest.raises(ValueError, match="unknown sampling backend"):
        make_sampler(tiny_model_dir, backend="tgi")


def test_sampling_package_imports_nothing_heavy():
    import subprocess
    import sys

    code = "import sys, rest_em.sampling; print(any(m in sys.modules for m in ('torch', 'transformers', 'vllm')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_switch_model_loads_the_new_weights_in_place(tiny_model_dir, tmp_path, chat_prompts):
    import shutil

    import torch
    from conftest import build_tiny_chat_model
    from transformers import AutoModelForCausalLM

    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    torch.manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    model.save_pretrained(other, safe_serialization=True)

    greedy = SampleParams(n=1, temperature=0.0, max_tokens=12)
    fresh = make_sampler(str(other), backend="hf")
    want = fresh.generate(chat_prompts, greedy)
    fresh.close()
    s = make_sampler(tiny_model_dir, backend="hf")
    try:
        before = s.generate(chat_prompts, greedy)
        assert before != want
        model_object = s.model
        assert s.switch_model(str(other)) is True
        assert s.model is model_object and s.model_path == str(other)
        assert s.generate(chat_prompts, greedy) == want
        bigger = build_tiny_chat_model(tmp_path / "bigger", vocab_size=360)
        assert s.switch_model(str(bigger)) is False
        assert s.generate(chat_prompts, greedy) == want  # refused before touching the weights
    finally:
        s.close()


def test_switch_incompatibility_names_the_difference(tiny_model_dir, tmp_path):
    import json
    import shutil

    from rest_em.sampling.checkpoints import switch_incompatibility

    assert switch_incompatibility(tiny_model_dir, tiny_model_dir) is None
    other = tmp_path / "m"
    shutil.copytree(tiny_model_dir, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["num_hidden_layers"] += 1
    (other / "config.json").write_text(json.dumps(cfg))
    assert "num_hidden_layers" in switch_incompatibility(tiny_model_dir, other)
    shutil.copytree(tiny_model_dir, tmp_path / "t")
    (tmp_path / "t" / "tokenizer.json").write_text("{}")
    assert "tokenizer.json" in switch_incompatibility(tiny_model_dir, tmp_path / "t")
    with pytest.raises(FileNotFoundError, match="config.json"):
        switch_incompatibility(tiny_model_dir, tmp_path / "missing")


def test_auto_falls_back_with_one_line_when_vllm_is_missing(tiny_model_dir, monkeypatch, caplog):
    import logging

    import rest_em.sampling as sampling

    monkeypatch.setattr(sampling, "vllm_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="rest_em.sampling"):
        s = make_sampler(tiny_model_dir, backend="auto")
    s.close()
    assert s.backend == "hf"
    lines = [r.getMessage() for r in caplog.records if r.name == "rest_em.sampling"]
    assert len(lines) == 1 and "vLLM is not installed" in lines[0]
    with pytest.raises(RuntimeError, match="sampling.backend=vllm, but vLLM is not installed"):
        make_sampler(tiny_model_dir, backend="vllm")
