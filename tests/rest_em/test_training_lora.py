"""LoRA M-steps (training.lora, peft): a fresh adapter on the start model, merged into a plain checkpoint;
in process and launched (torchrun, 2 CPU processes) giving the same adapter; RCRL's reward-token rows train."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rest_em.training import LoRAConfig, TrainConfig, train

pytest.importorskip("peft")

LORA = dict(learning_rate=1e-2, num_epochs=2, per_device_batch_size=4, max_seq_len=96, seed=0, report_to="none",
            lora=LoRAConfig(r=4, alpha=8))


def rows(tokenizer, n: int = 12) -> list[dict]:
    out = []
    for i in range(n):
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": f"What is {i} + {i}?"}], tokenize=False,
                                               add_generation_prompt=True)
        out.append({"prompt": prompt, "completion": f"The answer is {2 * i}.", "problem_id": f"p{i}"})
    return out


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def weights(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))


def test_lora_merges_into_a_plain_checkpoint_and_restarts_from_the_base(tiny_model_dir, tokenizer, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    base = weights(tiny_model_dir)
    result = train(tiny_model_dir, rows(tokenizer), TrainConfig(**LORA), str(tmp_path / "ckpt"))
    out = Path(result.checkpoint_dir)
    assert not (out / "adapter_config.json").exists() and (out / "tokenizer_config.json").exists()
    merged = weights(out)
    assert merged.keys() == base.keys()  # no lora_A / lora_B / base_layer names: a plain model
    moved = {k for k in base if not torch.equal(base[k], merged[k])}
    assert any("q_proj" in k for k in moved) and "model.embed_tokens.weight" not in moved  # adapters only
    assert result.loss_curve[-1][1] < result.loss_curve[0][1]
    AutoModelForCausalLM.from_pretrained(str(out))  # loads as any other checkpoint
    assert weights(tiny_model_dir).keys() == base.keys()  # the base is untouched


def test_lora_trains_the_added_token_rows(tiny_model_dir, tokenizer, tmp_path):
    """RCRL's reward tokens: new embedding rows (the mean) that must learn; every other row stays."""
    import torch

    from rest_em.algorithms.rcrl import CORRECT, REWARD_TOKENS, add_reward_tokens

    start = add_reward_tokens(Path(tiny_model_dir), tmp_path / "rcrl_base")
    data = [{**r, "prompt": r["prompt"] + CORRECT} for r in rows(tokenizer)]
    result = train(str(start), data, TrainConfig(**LORA), str(tmp_path / "ckpt"), trainable_tokens=REWARD_TOKENS)
    before, after = weights(start)["model.embed_tokens.weight"], weights(result.checkpoint_dir)["model.embed_tokens.weight"]
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(str(start)).convert_tokens_to_ids(list(REWARD_TOKENS))
    changed = (before - after).abs().amax(dim=1) > 0
    assert changed[ids[0]]  # the token of every training row moved
    assert not changed[[i for i in range(len(changed)) if i not in ids]].any()
    assert torch.isfinite(after).all()


def test_launched_lora_matches_in_process(tiny_model_dir, tokenizer, tmp_path, monkeypatch):
    """torchrun with 2 CPU processes (per-device batch 2) against one process (batch 4): the same global
    batches, so the same adapter, within float tolerance."""

    from rest_em.training.launch import LaunchedTrainer, make_trainer

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data = rows(tokenizer)
    common = {**LORA, "num_epochs": 1, "share_prompts": False}
    two = LaunchedTrainer(TrainConfig(**{**common, "per_device_batch_size": 2}, launcher="torchrun", num_processes=2))
    two.train(Path(tiny_model_dir), data, tmp_path / "iter_01" / "checkpoint")
    job = json.loads((tmp_path / "iter_01" / "train_job" / "train_config.json").read_text())
    assert job["lora"]["r"] == 4
    make_trainer(TrainConfig(**common)).train(Path(tiny_model_dir), data, tmp_path / "one" / "checkpoint")
    a, b = weights(tmp_path / "iter_01" / "checkpoint"), weights(tmp_path / "one" / "checkpoint")
    base = weights(tiny_model_dir)
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    moved = max(float((a[k] - base[k]).abs().max()) for k in a)
    print(f"max |w2 - w1| = {diff:.2e}, max |w - w_base| = {moved:.2e}")
    assert moved > 1e-3 and diff < 1e-5
