"""A real DPO M-step on the tiny model through TRL's DPOTrainer: the checkpoint is a Hugging Face model in
safetensors that transformers loads, its weights moved, and the trainer reports its steps."""

from __future__ import annotations

from pathlib import Path

from rest_em.algorithms.dpo import DPOSection
from rest_em.algorithms.dpo_trainer import TRLDPOTrainer
from rest_em.training import TrainConfig


def test_one_real_dpo_step_writes_a_loadable_safetensors_checkpoint(tmp_path, tiny_model_dir, chat_prompts):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    pairs = [{"problem_id": f"p{i}", "prompt": prompt, "chosen": "The answer is \\boxed{5}.", "rejected": "I think 6."}
             for i, prompt in enumerate(chat_prompts[:2])]
    config = TrainConfig(num_epochs=1, per_device_batch_size=2, learning_rate=1e-3, max_seq_len=64, dtype="float32")
    out = tmp_path / "iter_01" / "checkpoint"
    result = TRLDPOTrainer(config, DPOSection(beta=0.1, learning_rate=None)).train(Path(tiny_model_dir), pairs, out)
    assert result.steps == 1 and result.num_examples == 2 and result.train_loss is not None
    assert (out / "model.safetensors").exists() and (out / "tokenizer_config.json").exists()
    assert not (out.parent / ".checkpoint.partial").exists()
    before = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    assert any((before[k] != after[k]).any() for k in before if k in after)
    AutoModelForCausalLM.from_pretrained(str(out))


def test_a_dpo_m_step_with_lora_merges_its_adapter_and_moves_only_the_adapted_layers(tmp_path, tiny_model_dir,
                                                                                     chat_prompts):
    import pytest

    pytest.importorskip("peft")
    from safetensors.torch import load_file

    from rest_em.training import LoRAConfig

    pairs = [{"problem_id": f"p{i}", "prompt": prompt, "chosen": "The answer is \\boxed{5}.", "rejected": "I think 6."}
             for i, prompt in enumerate(chat_prompts[:2])]
    config = TrainConfig(num_epochs=1, per_device_batch_size=2, learning_rate=1e-2, max_seq_len=64, dtype="float32",
                         lora=LoRAConfig(r=4, alpha=8))
    out = tmp_path / "iter_01" / "checkpoint"
    result = TRLDPOTrainer(config, DPOSection(beta=0.1, learning_rate=None)).train(Path(tiny_model_dir), pairs, out)
    assert result.steps == 1 and result.train_loss is not None
    assert not (out / "adapter_config.json").exists()
    before = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    assert set(after) <= set(before) and not any("lora_" in k for k in after)
    moved = [k for k in after if (before[k] != after[k]).any()]
    assert moved and all("proj" in k for k in moved), moved  # the adapted linear layers only; embeddings untouched


def test_dpo_sft_weight_adds_the_chosen_nll_term(tmp_path, tiny_model_dir, chat_prompts):
    """dpo.sft_weight > 0 adds TRL's SFT term: the same step's loss grows by about weight x the chosen NLL (the
    DPO part is log 2 at the first step, where policy and reference are equal)."""
    import math

    from trl import DPOConfig

    from rest_em.algorithms.dpo_trainer import loss_args

    assert loss_args(DPOSection(sft_weight=0.0), DPOConfig) == {"loss_type": "sigmoid"}
    assert loss_args(DPOSection(sft_weight=0.5), DPOConfig) in (
        {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]}, {"loss_type": "sigmoid", "rpo_alpha": 0.5})
    pairs = [{"problem_id": f"p{i}", "prompt": prompt, "chosen": "The answer is \\boxed{5}.", "rejected": "I think 6."}
             for i, prompt in enumerate(chat_prompts[:2])]
    config = TrainConfig(num_epochs=1, per_device_batch_size=2, learning_rate=1e-9, max_seq_len=64, dtype="float32")
    plain = TRLDPOTrainer(config, DPOSection(beta=0.1, sft_weight=0.0)).train(Path(tiny_model_dir), pairs, tmp_path / "a")
    with_sft = TRLDPOTrainer(config, DPOSection(beta=0.1, sft_weight=1.0)).train(Path(tiny_model_dir), pairs,
                                                                               tmp_path / "b")
    assert abs(plain.train_loss - math.log(2)) < 1e-3
    assert with_sft.train_loss > plain.train_loss + 1.0  # the tiny model's NLL per token is several nats
    import pytest

    with pytest.raises(ValueError, match="sft_weight"):
        DPOSection(sft_weight=-1.0)
