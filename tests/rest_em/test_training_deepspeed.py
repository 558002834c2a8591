"""The M-step through DeepSpeed (ZeRO-2, one CPU process): same kind of checkpoint as the plain path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rest_em.training import TrainConfig, train
from rest_em.training.deepspeed_cfg import build_deepspeed_config, load_deepspeed_config

REPO = Path(__file__).resolve().parents[2]
FAST = dict(learning_rate=3e-3, num_epochs=2, per_device_batch_size=4, max_seq_len=96, seed=0, share_prompts=False)


def _examples(tokenizer, n=8):
    return [
        {
            "prompt": tokenizer.apply_chat_template(
                [{"role": "user", "content": f"What is {i} * 3?"}], tokenize=False, add_generation_prompt=True
            ),
            "completion": f"{i} * 3 = {3 * i}.",
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("stage", [2, 3])
def test_shipped_json_configs_match_the_builder(stage):
    path = REPO / "configs" / "deepspeed" / f"zero{stage}.json"
    assert json.loads(path.read_text()) == build_deepspeed_config(stage)


@pytest.mark.parametrize("stage", [1, 2])
def test_the_cpu_config_reduces_in_one_bucket_without_gpu_stream_overlap(stage):
    gpu, cpu = build_deepspeed_config(stage)["zero_optimization"], build_deepspeed_config(stage, cpu=True)["zero_optimization"]
    assert gpu["overlap_comm"] and gpu["contiguous_gradients"] and gpu["reduce_bucket_size"] == "auto"
    assert not cpu["overlap_comm"] and not cpu["contiguous_gradients"]
    assert cpu["reduce_bucket_size"] == cpu["allgather_bucket_size"] >= 500_000_000
    assert load_deepspeed_config(None, stage, cpu=True) == build_deepspeed_config(stage, cpu=True)


def test_config_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_deepspeed_config(str(tmp_path / "nope.json"), 2)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_deepspeed_config(str(bad), 2)


def test_deepspeed_zero2_cpu_matches_plain_checkpoint(tiny_model_dir, tmp_path):
    pytest.importorskip("deepspeed")
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples = _examples(tokenizer)
    env_before = {k: os.environ.get(k) for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE")}

    plain = train(tiny_model_dir, examples, TrainConfig(**FAST), str(tmp_path / "plain"))
    ds_cfg = str(REPO / "configs" / "deepspeed" / "zero2.json")
    ds = train(
        tiny_model_dir, examples, TrainConfig(**FAST, backend="deepspeed", deepspeed_config=ds_cfg), str(tmp_path / "ds")
    )

    assert ds.steps == plain.steps == 4
    plain_files = sorted(p.name for p in Path(plain.checkpoint_dir).iterdir())
    ds_files = sorted(p.name for p in Path(ds.checkpoint_dir).iterdir())
    assert ds_files == plain_files
    AutoModelForCausalLM.from_pretrained(ds.checkpoint_dir)
    # One process, fp32, the Trainer's AdamW under ZeRO-2: the same optimisation as the plain path.
    a, b = load_file(f"{plain.checkpoint_dir}/model.safetensors"), load_file(f"{ds.checkpoint_dir}/model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)
    assert ds.train_loss == pytest.approx(plain.train_loss, rel=1e-3)

    # The single-process distributed environment is torn down again, so later calls start clean.
    assert {k: os.environ.get(k) for k in env_before} == env_before
    assert not torch.distributed.is_initialized()
    again = train(tiny_model_dir, examples, TrainConfig(**FAST), str(tmp_path / "plain2"))
    assert again.train_loss == pytest.approx(plain.train_loss, rel=1e-5)


def test_a_second_deepspeed_m_step_in_the_same_process(tiny_model_dir, tmp_path):
    """Iteration 2 of an in-process DeepSpeed run (configs/math.yaml): before, DeepSpeed's cached world group
    outlived the destroyed process group and the second run failed with "Group ... is not registered"."""
    pytest.importorskip("deepspeed")
    from transformers import AutoTokenizer

    examples = _examples(AutoTokenizer.from_pretrained(tiny_model_dir), n=4)
    config = TrainConfig(**{**FAST, "num_epochs": 1}, backend="deepspeed", zero_stage=2)
    first = train(tiny_model_dir, examples, config, str(tmp_path / "iter_01"))
    second = train(tiny_model_dir, examples, config, str(tmp_path / "iter_02"))
    assert second.train_loss == pytest.approx(first.train_loss, rel=1e-5)
