"""Prompt-shared packing (rest_em/training/packing.py): each prompt once, its completions after it.

The shared row must give every completion exactly what a row of its own gives it: the same loss terms
(the batch loss within 1e-5) and the same gradient for each example, on sdpa and eager attention.
"""

from __future__ import annotations

import pytest

from rest_em.training import TrainConfig, train
from rest_em.training.packing import (
    PromptSharedCollator,
    bundle_groups,
    bundle_rows,
    group_rows,
    shared_supervised_loss,
    shared_tokens,
    supports_shared_mask,
)
from rest_em.training.sft import PackedCompletionCollator, supervised_loss, tokenize_examples


def grouped_examples(tokenizer, problems: int = 3, per_problem: int = 3) -> list[dict]:
    rows = []
    for i in range(problems):
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": f"What is {i} + {i}? Show the work."}],
                                               tokenize=False, add_generation_prompt=True)
        for j in range(per_problem - (i % 2)):  # groups of different sizes
            rows.append({"prompt": prompt, "completion": f"We add {i} and {i}{' again' * j}: the answer is {2 * i}.",
                         "problem_id": f"p{i}"})
    return rows


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def load(tiny_model_dir, attn: str):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation=attn).eval()


def test_layout_positions_and_mask(tokenizer):
    import torch

    rows, _ = tokenize_examples(tokenizer, grouped_examples(tokenizer, 2, 2), 96, tokenizer.eos_token_id)
    groups = group_rows(rows)
    assert [len(g) for g in groups] == [2, 1]
    batch = PromptSharedCollator(True, "sdpa")([{"groups": groups}])
    p = groups[0][0]["prompt_len"]
    c1, c2 = (len(r["input_ids"]) - p for r in groups[0])
    pos = batch["position_ids"][0].tolist()
    assert pos[: p + c1 + c2] == list(range(p)) + list(range(p, p + c1)) + list(range(p, p + c2))
    mask = batch["attention_mask"][0, 0]
    first2 = p + c1  # first token of the second completion
    assert mask[first2, :p].all() and not mask[first2, p:first2].any() and mask[first2, first2]
    assert not mask[p + c1 + c2:, :p + c1 + c2].any()  # the next group sees nothing of the first
    assert shared_tokens([{"groups": groups}]) == batch["input_ids"].shape[1] < sum(len(r["input_ids"]) for r in rows)
    # each completion's first token is predicted from the prompt's last position
    assert batch["loss_sources"].tolist().count(p - 1) == 2
    assert torch.equal(batch["shift_labels"][0], batch["loss_targets"])


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_shared_loss_and_per_example_gradients_equal_the_unshared(tiny_model_dir, tokenizer, attn):
    import torch

    model = load(tiny_model_dir, attn)
    assert supports_shared_mask(model)
    rows, _ = tokenize_examples(tokenizer, grouped_examples(tokenizer), 96, tokenizer.eos_token_id)
    bundles = [{"groups": group_rows(rows)}]
    shared = PromptSharedCollator(True, attn)(bundles)
    unshared = PackedCompletionCollator()(bundle_rows(bundles[0]))
    assert shared["input_ids"].shape[1] < unshared["input_ids"].shape[1]
    with torch.no_grad():
        want = float(supervised_loss(model, unshared))
        got = float(shared_supervised_loss(model, shared))
    assert abs(got - want) < 1e-5
    # not vacuous: with a plain causal mask the completions see each other and the loss changes
    n = shared["input_ids"].shape[1]
    causal = torch.ones(n, n, dtype=torch.bool).tril()[None, None]
    if attn == "eager":
        causal = torch.zeros(causal.shape).masked_fill(~causal, torch.finfo(torch.float32).min)
    with torch.no_grad():
        assert abs(float(shared_supervised_loss(model, {**shared, "attention_mask": causal})) - want) > 1e-3
    # per example: the gradient of one completion's loss terms, in the shared row and in a row of its own
    ordered = bundle_rows(bundles[0])
    n_targets = [sum(1 for t in r["labels"] if t != -100) for r in ordered]
    start = 0
    for row, n in zip(ordered, n_targets):
        model.zero_grad()
        one = {**shared, "loss_sources": shared["loss_sources"][start:start + n],
               "loss_targets": shared["loss_targets"][start:start + n]}
        shared_supervised_loss(model, one).backward()
        g_shared = {k: p.grad.clone() for k, p in model.named_parameters()}
        model.zero_grad()
        supervised_loss(model, PackedCompletionCollator()([row])).backward()
        for k, p in model.named_parameters():
            assert torch.allclose(g_shared[k], p.grad, atol=1e-5, rtol=1e-4), (k, float((g_shared[k] - p.grad).abs().max()))
        start += n
    assert start == len(shared["loss_targets"])


def test_bundles_keep_groups_whole_and_cover_every_row(tokenizer):
    rows, _ = tokenize_examples(tokenizer, grouped_examples(tokenizer, 7, 3), 96, tokenizer.eos_token_id)
    groups = group_rows(rows)
    bundles = bundle_groups(groups, rows_per_batch=4, seed=0)
    assert sorted(id(r) for b in bundles for r in bundle_rows(b)) == sorted(id(r) for r in rows)
    assert all(len(bundle_rows(b)) <= 4 or len(b["groups"]) == 1 for b in bundles)
    assert bundle_groups(groups, 4, seed=0) == bundles and bundle_groups(groups, 4, seed=1) != bundles


def test_training_shares_prompts_by_default_and_learns(tiny_model_dir, tokenizer, tmp_path, caplog):
    import logging

    examples = grouped_examples(tokenizer, 4, 3)
    cfg = dict(learning_rate=3e-3, num_epochs=3, per_device_batch_size=4, max_seq_len=96, report_to="none")
    with caplog.at_level(logging.INFO, logger="rest_em.training.trainer"):
        shared = train(tiny_model_dir, examples, TrainConfig(**cfg), str(tmp_path / "shared"))
    assert "prompt-shared packed" in caplog.text
    unshared = train(tiny_model_dir, examples, TrainConfig(**cfg, share_prompts=False), str(tmp_path / "unshared"))
    assert shared.tokens_processed < unshared.tokens_processed
    first, last = shared.loss_curve[0][1], shared.loss_curve[-1][1]
    assert last < first - 0.5


def test_flash_attention_keeps_position_id_packing(tiny_model_dir, tokenizer):
    """No dense mask is forced on a varlen kernel: the trainer falls back to position-id packing."""
    from rest_em.training.trainer import _share_prompts

    model = load(tiny_model_dir, "sdpa")
    model.config._attn_implementation = "flash_attention_2"  # what a GPU with flash-attn installed would load
    assert not supports_shared_mask(model)
    assert not _share_prompts(TrainConfig(), model, None, True, False)
    model.config._attn_implementation = "sdpa"
    assert _share_prompts(TrainConfig(), model, None, True, False)
    assert not _share_prompts(TrainConfig(), model, None, False, False)  # no supervised-only loss
    assert not _share_prompts(TrainConfig(), model, None, True, True)  # early stopping
    with pytest.raises(ValueError, match="needs attention"):
        PromptSharedCollator(True, "flash_attention_2")
