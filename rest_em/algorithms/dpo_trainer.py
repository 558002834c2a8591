"""The DPO M-step: TRL's ``DPOTrainer`` behind the ``mstep.Trainer`` protocol.

    trainer = TRLDPOTrainer(cfg.training, cfg.dpo)
    result = trainer.train(init, pair_rows, output_dir)   # rows: {prompt, chosen, rejected, ...}

Only TRL's stable surface is used (``DPOConfig`` fields shared by TRL 0.x and 1.x, ``DPOTrainer(model,
ref_model=None, args, train_dataset, processing_class)``), so it works across the transformers versions
the project supports. TRL tokenizes ``prompt`` (our rendered chat prompt) and ``prompt + chosen`` /
``prompt + rejected`` with EOS appended, and copies the start model as the frozen reference. With
``training.lora`` it trains a fresh LoRA adapter (TRL's ``peft_config``); the reference is then the start
model with the adapter disabled (no copy), and the adapter is merged into the checkpoint. The checkpoint
(safetensors, tokenizer) is written to a scratch sibling and renamed into place.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from rest_em.training import TrainConfig, TrainResult
from rest_em.training.precision import precision_flags
from rest_em.training.publish import publish_model
from rest_em.training.tracking import trainer_tracking_args

if TYPE_CHECKING:
    from rest_em.algorithms.dpo import DPOSection

logger = logging.getLogger(__name__)


def loss_args(dpo: "DPOSection", config_cls: type) -> dict[str, Any]:
    """``DPOConfig`` loss arguments: ``dpo.loss_type``, plus the SFT term when ``dpo.sft_weight`` > 0 (TRL 1.x:
    ``loss_type=[type, "sft"]`` with ``loss_weights``; TRL 0.x: ``rpo_alpha``)."""
    if not dpo.sft_weight:
        return {"loss_type": dpo.loss_type}
    import dataclasses

    known = {f.name for f in dataclasses.fields(config_cls)}
    if "loss_weights" in known:
        return {"loss_type": [dpo.loss_type, "sft"], "loss_weights": [1.0, dpo.sft_weight]}
    if "rpo_alpha" in known:
        return {"loss_type": dpo.loss_type, "rpo_alpha": dpo.sft_weight}
    raise RuntimeError("dpo.sft_weight needs a TRL whose DPOConfig has loss_weights or rpo_alpha: pip install -U trl")


@dataclass(frozen=True)
class TRLDPOTrainer:
    config: TrainConfig
    dpo: "DPOSection"

    def train(self, init: Path, rows: Sequence[dict[str, Any]], output_dir: Path) -> TrainResult:
        if not rows:
            raise ValueError("no preference pairs to train on")
        start = time.perf_counter()
        import torch
        from datasets import Dataset
        from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
        from trl import DPOConfig, DPOTrainer

        from rest_em.tokens import available_cpus

        c = self.config
        cuda = torch.cuda.is_available()
        if not cuda:
            torch.set_num_threads(available_cpus())
        set_seed(c.seed)
        tokenizer = AutoTokenizer.from_pretrained(str(init))
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(str(init), dtype=torch.float32)
        data = Dataset.from_list([{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
                                  for r in rows])
        out = Path(output_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        scratch = out.with_name(f".{out.name}.partial")
        if scratch.exists():
            shutil.rmtree(scratch)
        steps_per_epoch = max(1, math.ceil(len(rows) / (c.per_device_batch_size * c.gradient_accumulation_steps)))
        total_steps = max(1, math.ceil(steps_per_epoch * c.num_epochs))
        args = DPOConfig(
            output_dir=str(scratch), beta=self.dpo.beta, **loss_args(self.dpo, DPOConfig),
            learning_rate=self.dpo.learning_rate if self.dpo.learning_rate is not None else c.learning_rate,
            num_train_epochs=c.num_epochs, per_device_train_batch_size=c.per_device_batch_size,
            gradient_accumulation_steps=c.gradient_accumulation_steps, max_length=c.max_seq_len,
            lr_scheduler_type=c.lr_scheduler, warmup_steps=math.ceil(c.warmup_ratio * total_steps),
            weight_decay=c.weight_decay, seed=c.seed, data_seed=c.seed, save_strategy="no", **trainer_tracking_args(c.report_to, out, DPOConfig),
            logging_steps=max(1, steps_per_epoch // 4), dataloader_num_workers=0, use_cpu=not cuda,
            gradient_checkpointing=c.gradient_checkpointing, **precision_flags(c.dtype, cuda, "training.dtype"),
        )
        peft = {}
        if c.lora.enabled:  # a fresh adapter on the start model; TRL's reference is that model, adapter disabled
            from rest_em.training.lora import peft_lora_config

            peft = {"peft_config": peft_lora_config(c.lora)}
        trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=data, processing_class=tokenizer,
                             **peft)
        logger.info("DPO M-step: %d pairs, %d steps/epoch x %.2g epochs, beta %s, loss %s%s%s", len(rows),
                    steps_per_epoch, c.num_epochs, self.dpo.beta, self.dpo.loss_type,
                    f" + {self.dpo.sft_weight} x SFT" if self.dpo.sft_weight else "",
                    f", LoRA r={c.lora.r}" if peft else "")
        t_train = time.perf_counter()
        output = trainer.train()
        train_seconds = time.perf_counter() - t_train
        publish_model(trainer.model, tokenizer, out)
        tokens = sum(len(tokenizer(r["prompt"] + r["chosen"])["input_ids"]) + len(tokenizer(r["rejected"])["input_ids"])
                     for r in rows) * float(trainer.state.epoch or 0.0)
        result = TrainResult(checkpoint_dir=str(out), steps=int(trainer.state.global_step),
                             train_loss=float(output.training_loss) if output.training_loss is not None else None,
                             seconds=time.perf_counter() - start, tokens_per_s=tokens / max(train_seconds, 1e-9),
                             num_examples=len(rows))
        logger.info("DPO M-step done: %d steps, loss %s, %.1fs -> %s", result.steps, result.train_loss, result.seconds,
                    out)
        return result
