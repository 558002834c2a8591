"""The M-step on the tiny model: completion-only loss masking, training from the base, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rest_em.training import TrainConfig, TrainResult, train
from rest_em.training.sft import IGNORE_INDEX, CompletionOnlyCollator, tokenize_examples
from rest_em.training.trainer import split_train_val

# Small enough for seconds on 2 cores, large enough to move the loss.
FAST = dict(learning_rate=3e-3, num_epochs=3, per_device_batch_size=4, max_seq_len=96, seed=0)


def make_examples(tokenizer, n: int = 12, offset: int = 0) -> list[dict]:
    rows = []
    for i in range(offset, offset + n):
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": f"What is {i} + {i}?"}], tokenize=False, add_generation_prompt=True
        )
        rows.append({"prompt": prompt, "completion": f"The answer is {2 * i}.", "problem_id": f"p{i}"})
    return rows


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def completion_loss(model_dir: str, tokenizer, examples: list[dict]) -> float:
    """Mean loss on completion tokens of ``examples`` under the model at ``model_dir``."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    rows, _ = tokenize_examples(tokenizer, examples, 96, tokenizer.eos_token_id)
    batch = CompletionOnlyCollator(tokenizer.pad_token_id)(rows)
    with torch.no_grad():
        return float(model(**batch).loss)


def state_dict_of(model_dir: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(model_dir) / "model.safetensors"))


# -- masking -----------------------------------------------------------------------------------------


def test_labels_mask_prompt_and_padding_exactly(tokenizer):
    examples = make_examples(tokenizer, 3)
    examples[1]["completion"] = "A much longer completion, so that the other rows need padding at the end."
    rows, stats = tokenize_examples(tokenizer, examples, 512, tokenizer.eos_token_id)
    batch = CompletionOnlyCollator(tokenizer.pad_token_id)([{k: r[k] for k in ("input_ids", "labels")} for r in rows])
    for i, ex in enumerate(examples):
        prompt_ids = tokenizer(ex["prompt"], add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(ex["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        n_p, n_c = len(prompt_ids), len(completion_ids)
        ids, labels, mask = batch["input_ids"][i].tolist(), batch["labels"][i].tolist(), batch["attention_mask"][i].tolist()
        assert ids[: n_p + n_c] == prompt_ids + completion_ids
        assert labels[:n_p] == [IGNORE_INDEX] * n_p  # prompt: no loss
        assert labels[n_p : n_p + n_c] == completion_ids  # completion + EOS: loss
        assert labels[n_p + n_c :] == [IGNORE_INDEX] * (len(ids) - n_p - n_c)  # padding: no loss
        assert mask == [1] * (n_p + n_c) + [0] * (len(ids) - n_p - n_c)
        assert all(t == tokenizer.pad_token_id for t in ids[n_p + n_c :])
    assert stats.num_label_tokens == sum(1 for r in rows for t in r["labels"] if t != IGNORE_INDEX)
    assert any(len(r["input_ids"]) < batch["input_ids"].shape[1] for r in rows), "the test needs a padded row"


def test_truncation_and_dropping_long_prompts(tokenizer):
    one = make_examples(tokenizer, 1)[0]
    ex = [one, {**one, "completion": one["completion"] + " Done."}]
    n_prompt = len(tokenizer(ex[0]["prompt"], add_special_tokens=False)["input_ids"])
    rows, stats = tokenize_examples(tokenizer, ex, n_prompt + 2, tokenizer.eos_token_id)
    assert stats.num_truncated == 2 and all(len(r["input_ids"]) == n_prompt + 2 for r in rows)
    rows, stats = tokenize_examples(tokenizer, ex, n_prompt, tokenizer.eos_token_id)
    assert rows == [] and stats.num_dropped_long_prompt == 2


def test_malformed_example_is_named(tokenizer):
    with pytest.raises(ValueError, match=r"example 1 \(problem_id='bad'\)"):
        tokenize_examples(tokenizer, [{"prompt": "a", "completion": "b"}, {"prompt": "a", "problem_id": "bad"}], 32, 0)


def test_validation_split_keeps_problems_whole():
    rows = [{"prompt": "p", "completion": str(j), "problem_id": f"q{i}"} for i in range(10) for j in range(3)]
    train_rows, val_rows = split_train_val(rows, 0.2, seed=0)
    assert len(val_rows) == 6 and len(train_rows) == 24
    assert not {r["problem_id"] for r in train_rows} & {r["problem_id"] for r in val_rows}


# -- train() -----------------------------------------------------------------------------------------


def test_zero_examples_is_a_clear_error(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="no training examples"):
        train(tiny_model_dir, [], TrainConfig(), str(tmp_path / "ckpt"))
    assert not (tmp_path / "ckpt").exists()


def test_config_validation():
    with pytest.raises(ValueError, match="training.backend"):
        TrainConfig(backend="fsdp")
    with pytest.raises(ValueError, match="zero_stage"):
        TrainConfig(zero_stage=4)


def test_train_lowers_loss_writes_loadable_checkpoint_and_restarts_from_base(tiny_model_dir, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    examples = make_examples(tokenizer)
    other = make_examples(tokenizer, offset=50)
    base_before = state_dict_of(tiny_model_dir)

    first = train(tiny_model_dir, examples, TrainConfig(**FAST), str(tmp_path / "a"))
    assert isinstance(first, TrainResult)
    assert first.num_examples == len(examples) and first.steps == 9  # 3 batches x 3 epochs
    assert first.train_loss is not None and first.seconds > 0 and first.tokens_per_s > 0
    files = sorted(p.name for p in Path(first.checkpoint_dir).iterdir())
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert name in files
    assert not any(name.startswith("checkpoint-") or name == "training_args.bin" for name in files)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir()), "no temp dir left behind"
    AutoModelForCausalLM.from_pretrained(first.checkpoint_dir)  # loads
    assert completion_loss(first.checkpoint_dir, tokenizer, examples) < completion_loss(tiny_model_dir, tokenizer, examples) - 0.5

    # An M-step on other data in between, then the first data again into the same directory: the
    # result equals the first run's, so training starts from the base weights, never the last iterate.
    import torch

    first_weights = state_dict_of(first.checkpoint_dir)
    train(tiny_model_dir, other, TrainConfig(**FAST), str(tmp_path / "b"))
    again = train(tiny_model_dir, examples, TrainConfig(**FAST), str(tmp_path / "a"))
    assert again.checkpoint_dir == first.checkpoint_dir
    again_weights, other_weights = state_dict_of(again.checkpoint_dir), state_dict_of(str(tmp_path / "b"))
    assert first_weights.keys() == again_weights.keys()
    assert all(torch.allclose(first_weights[k], again_weights[k], atol=1e-6) for k in first_weights)
    assert not all(torch.allclose(first_weights[k], other_weights[k], atol=1e-6) for k in first_weights)
    base_after = state_dict_of(tiny_model_dir)
    assert all(torch.equal(base_before[k], base_after[k]) for k in base_before), "the base model was modified"


def test_early_stopping_callback_stops_after_patience_and_keeps_best():
    import torch
    from transformers import TrainerControl, TrainerState

    from rest_em.training.trainer import _early_stopping_callback

    model = torch.nn.Linear(2, 2)
    cb = _early_stopping_callback(patience=2, keep_best=True)
    state, control = TrainerState(), TrainerControl()
    for step, loss in [(1, 3.0), (2, 2.0), (3, 2.5)]:
        state.global_step = step
        with torch.no_grad():
            model.weight.fill_(step)
        cb.on_evaluate(None, state, control, metrics={"eval_loss": loss}, model=model)
        assert not control.should_training_stop
    state.global_step = 4
    cb.on_evaluate(None, state, control, metrics={"eval_loss": 2.1}, model=model)
    assert control.should_training_stop  # two evaluations without beating 2.0
    assert cb.best_step == 2 and cb.best_loss == 2.0
    assert torch.all(cb.best_state["weight"] == 2.0)  # a copy of the weights at the best step


def test_early_stopping_run_holds_out_validation_problems(tiny_model_dir, tokenizer, tmp_path):
    examples = make_examples(tokenizer, 16)
    cfg = TrainConfig(**{**FAST, "num_epochs": 2}, early_stopping=True, val_fraction=0.25, early_stopping_patience=1)
    result = train(tiny_model_dir, examples, cfg, str(tmp_path / "es"))
    assert result.num_examples == 12  # 4 of 16 problems held out for validation
    assert (Path(result.checkpoint_dir) / "model.safetensors").is_file()
    config = json.loads((Path(result.checkpoint_dir) / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]


# -- padding-free batches and the supervised-only LM head ----------------------------------------------


def test_packed_and_supervised_only_losses_equal_the_padded_loss(tiny_model_dir, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    from rest_em.training.sft import PackedCompletionCollator, supervised_loss, supports_supervised_loss

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    assert supports_supervised_loss(model)
    examples = make_examples(tokenizer, 5)
    examples[2]["completion"] = "A much longer completion, so that the other rows need padding at the end."
    rows, _ = tokenize_examples(tokenizer, examples, 96, tokenizer.eos_token_id)
    padded = CompletionOnlyCollator(tokenizer.pad_token_id)(rows)
    packed = PackedCompletionCollator()(rows)
    assert packed["input_ids"].shape == (1, sum(len(r["input_ids"]) for r in rows))
    assert "attention_mask" not in packed
    starts = (packed["position_ids"][0] == 0).nonzero().flatten().tolist()
    assert starts == [0, *torch.tensor([len(r["input_ids"]) for r in rows]).cumsum(0)[:-1].tolist()]
    with torch.no_grad():
        want = float(model(**padded).loss)
        assert float(model(**packed, use_cache=False).loss) == pytest.approx(want, rel=1e-5)
        assert float(supervised_loss(model, padded)) == pytest.approx(want, rel=1e-5)
        assert float(supervised_loss(model, packed)) == pytest.approx(want, rel=1e-5)
        n = int((padded["labels"] != IGNORE_INDEX).sum())
        assert float(supervised_loss(model, packed, num_items_in_batch=2 * n)) == pytest.approx(want / 2, rel=1e-5)
        # Without the position ids the rows would attend to each other: the loss changes (the check above
        # is not vacuous).
        leaky = {k: v for k, v in packed.items() if k != "position_ids"}
        assert abs(float(model(**leaky, use_cache=False).loss) - want) > 1e-3


def test_packed_supervised_training_gives_the_padded_weights(tiny_model_dir, tokenizer, tmp_path):
    import torch

    examples = make_examples(tokenizer)
    examples[3]["completion"] = "A longer completion than the others, to make padding matter here."
    new = train(tiny_model_dir, examples, TrainConfig(**FAST, share_prompts=False), str(tmp_path / "new"))
    old = train(tiny_model_dir, examples, TrainConfig(**FAST, packing=False, supervised_logits_only=False),
                str(tmp_path / "old"))
    assert new.steps == old.steps
    assert new.train_loss == pytest.approx(old.train_loss, rel=1e-4)
    a, b = state_dict_of(new.checkpoint_dir), state_dict_of(old.checkpoint_dir)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
