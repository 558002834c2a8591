"""The M-step: fine-tune the base model with the Hugging Face Trainer, plain or through DeepSpeed.

One process on CPU or one GPU: call :func:`rest_em.training.train`. Several GPUs or nodes: run the
same program under a launcher (``deepspeed``, ``accelerate launch`` or ``torchrun``); each rank calls
``train`` and rank 0 writes the checkpoint (see docs/model-and-backends.md).

Kept cheap on CPUs: no intermediate checkpoints, evaluation only when early stopping asks for it,
dataloader workers 0, no reporting integrations, batches grouped by length to cut padding.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from rest_em.training import TrainConfig, TrainResult
from rest_em.training.deepspeed_cfg import (
    ensure_single_process_env,
    load_deepspeed_config,
    restore_env,
    skip_shm_comm_build,
    zero_stage_of,
)
from rest_em.training.packing import (
    PromptSharedCollator,
    bundle_groups,
    group_rows,
    shared_supervised_loss,
    shared_tokens,
    supports_shared_mask,
)
from rest_em.training.precision import precision_flags
from rest_em.training.publish import publish_dir, save_model_files, scratch_dir
from rest_em.training.sft import (
    CompletionOnlyCollator,
    ListDataset,
    PackedCompletionCollator,
    supervised_loss,
    supports_supervised_loss,
    tokenize_examples,
)
from rest_em.training.tracking import trainer_tracking_args

logger = logging.getLogger(__name__)


def split_train_val(examples: Sequence[dict], val_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out about ``val_fraction`` of the examples, whole problems at a time when rows carry a
    ``problem_id`` (several solutions of one problem must not sit on both sides of the split)."""
    groups: dict[object, list[dict]] = {}
    for i, ex in enumerate(examples):
        groups.setdefault(ex.get("problem_id", f"#row{i}"), []).append(ex)
    keys = list(groups)
    random.Random(seed).shuffle(keys)
    n_val_groups = max(1, round(len(keys) * val_fraction))
    if n_val_groups >= len(keys):
        return list(examples), []
    val = [ex for k in keys[:n_val_groups] for ex in groups[k]]
    train = [ex for k in keys[n_val_groups:] for ex in groups[k]]
    return train, val


def _precision_flags(dtype: str, cuda: bool) -> dict:
    """The flags that are on (``precision.precision_flags`` without the ``False`` entries)."""
    return {k: v for k, v in precision_flags(dtype, cuda, "training.dtype").items() if v}


def _checkpointing_flag(args_cls, enabled: bool) -> dict:
    """transformers 5 renamed gradient_checkpointing to activation_checkpointing (old name deprecated)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(args_cls)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": enabled}


def _trainer_class(supervised_only: bool):
    """The HF Trainer, or one whose training loss runs the LM head on supervised positions only."""
    from transformers import Trainer

    if not supervised_only:
        return Trainer

    class SupervisedLogitsTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs:  # evaluation wants the outputs: the standard path
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            # Calling the decoder and head directly skips the wrapped forward, so enter the
            # mixed-precision autocast that wrapper would have.
            loss_fn = shared_supervised_loss if "loss_sources" in inputs else supervised_loss
            inner = self.accelerator.unwrap_model(model)
            with self.accelerator.autocast():
                if inner is model:
                    loss = loss_fn(inner, inputs, num_items_in_batch)
                else:
                    # A DDP wrapper syncs gradients (a DeepSpeed engine runs its ZeRO bookkeeping) only for a
                    # forward that went through it: route the call
                    # through the wrapper, with the inner model's forward computing this loss for once.
                    inner.forward = lambda **batch: loss_fn(inner, batch, num_items_in_batch)
                    try:
                        loss = model(**inputs)
                    finally:
                        del inner.forward
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss does
            return loss

    return SupervisedLogitsTrainer


def _early_stopping_callback(patience: int, keep_best: bool):
    from transformers import TrainerCallback

    class EarlyStopOnValLoss(TrainerCallback):
        """Stop when eval_loss has not improved for ``patience`` evaluations; keep the best weights in
        memory (not on disk: no intermediate checkpoints) and restore them at the end."""

        def __init__(self) -> None:
            self.best_loss = math.inf
            self.best_state: dict | None = None
            self.best_step = 0
            self.bad_evals = 0
            self.history: list[tuple[int, float]] = []

        def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
            loss = (metrics or {}).get("eval_loss")
            if loss is None:
                return
            self.history.append((state.global_step, float(loss)))
            if loss < self.best_loss:
                self.best_loss, self.best_step, self.bad_evals = float(loss), state.global_step, 0
                if keep_best and model is not None:
                    self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            else:
                self.bad_evals += 1
                if self.bad_evals >= patience:
                    logger.info(
                        "early stopping at step %d: val loss %.4f has not improved on %.4f (step %d) for %d evals",
                        state.global_step, loss, self.best_loss, self.best_step, self.bad_evals,
                    )
                    control.should_training_stop = True

    return EarlyStopOnValLoss()


def _end_single_process_group() -> None:
    """Undo the one-process torch.distributed group DeepSpeed created, so later calls in this process
    (the next iteration's M-step, a plain-backend run, sampling) start from a clean state."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _forget_deepspeed_groups()
    try:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    except ImportError:  # pragma: no cover - accelerate comes with the Trainer
        pass


def _forget_deepspeed_groups() -> None:
    """DeepSpeed caches the process groups it made (deepspeed.utils.groups, deepspeed.comm.cdb); once the
    group is destroyed, a second DeepSpeed M-step in this process would broadcast over the dead one
    ("Group ... is not registered"), e.g. iteration 2 of configs/math.yaml."""
    import sys

    groups = sys.modules.get("deepspeed.utils.groups")
    if groups is not None:
        for name, value in list(vars(groups).items()):
            if name.startswith("_") and name.isupper() and name.endswith(("GROUP", "GROUP_RANKS")):
                setattr(groups, name, {} if isinstance(value, dict) else None)
    comm = sys.modules.get("deepspeed.comm.comm")
    if comm is not None:
        comm.cdb = None


def _datasets(tokenizer, examples: Sequence[dict], config: TrainConfig, eos_id: int):
    """Tokenized train rows, validation rows (empty unless early stopping can run) and train stats."""
    train_examples, val_examples = list(examples), []
    if config.early_stopping:
        train_examples, val_examples = split_train_val(examples, config.val_fraction, config.seed)
        if not val_examples:
            logger.warning("early stopping needs >= 2 problems for a validation split; training without it")
    train_rows, stats = tokenize_examples(tokenizer, train_examples, config.max_seq_len, eos_id)
    if not train_rows:
        raise ValueError(
            f"all {len(train_examples)} training examples were dropped: their prompts are longer than "
            f"training.max_seq_len={config.max_seq_len} tokens"
        )
    val_rows = tokenize_examples(tokenizer, val_examples, config.max_seq_len, eos_id)[0] if val_examples else []
    return train_rows, val_rows, stats


def _training_arguments(config: TrainConfig, scratch: Path, cuda: bool, deepspeed_cfg, steps_per_epoch: int, evaluate: bool,
                        out: Path, bundled: bool):
    from transformers import TrainingArguments

    eval_kwargs: dict = {"eval_strategy": "no"}
    if evaluate:
        eval_kwargs = {
            "eval_strategy": "steps",
            "eval_steps": max(1, steps_per_epoch // config.evals_per_epoch),
            "per_device_eval_batch_size": config.per_device_batch_size,
        }
    # "constant" would silently ignore a warmup: use its warmup variant then.
    scheduler = config.lr_scheduler
    if scheduler == "constant" and config.warmup_ratio > 0:
        scheduler = "constant_with_warmup"
    return TrainingArguments(
        output_dir=str(scratch),
        per_device_train_batch_size=1 if bundled else config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        num_train_epochs=config.num_epochs,
        warmup_steps=config.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        weight_decay=config.weight_decay,
        lr_scheduler_type=scheduler,
        seed=config.seed,
        data_seed=config.seed,
        save_strategy="no",
        logging_strategy="steps",
        logging_steps=max(1, steps_per_epoch // 4),
        dataloader_num_workers=0,
        remove_unused_columns=False,
        # bundles are batches already (whole prompt groups): shuffle them; rows: group by length to cut padding
        train_sampling_strategy="random" if bundled else "group_by_length",
        use_cpu=not cuda,
        deepspeed=deepspeed_cfg,
        disable_tqdm=False,
        **_checkpointing_flag(TrainingArguments, config.gradient_checkpointing),
        **precision_flags(config.dtype, cuda, "training.dtype"),
        **trainer_tracking_args(config.report_to, out, TrainingArguments),
        **eval_kwargs,
    )


def _save(trainer, tokenizer, deepspeed_cfg, scratch: Path, out: Path, is_main: bool) -> None:
    if deepspeed_cfg is not None and zero_stage_of(deepspeed_cfg) == 3:
        trainer.save_model(str(scratch))  # gathers the partitioned weights onto rank 0
        if is_main:
            tokenizer.save_pretrained(str(scratch))
    elif is_main:
        # Every rank holds the full weights (plain, ZeRO 0-2): save the model itself (a LoRA model merged),
        # the same way on both paths (tied embeddings stored once, as transformers and vLLM expect).
        save_model_files(trainer.model, tokenizer, scratch)
    if is_main:
        publish_dir(scratch, out)


def _share_prompts(config: TrainConfig, model, deepspeed_cfg, supervised_only: bool, early_stopping: bool) -> bool:
    """Whether this run packs prompt-shared (``training.share_prompts``; null = wherever it can)."""
    if config.share_prompts is False or not config.packing:
        return False
    why = None
    if early_stopping:
        why = "early stopping evaluates unshared rows"
    elif not supervised_only:
        why = "it needs the loss on supervised positions only (training.supervised_logits_only)"
    elif not supports_shared_mask(model):
        why = (f"attention {getattr(model.config, '_attn_implementation', None)!r} takes no custom 4D mask; "
               "position-id packing instead (varlen kernels)")
    if why is None:
        return True
    (logger.warning if config.share_prompts else logger.info)("prompt-shared packing off: %s", why)
    return False


def run_training(base_model_path: str, examples: Sequence[dict], config: TrainConfig, output_dir: str,
                 trainable_tokens: Sequence[str] = ()) -> TrainResult:
    """See :func:`rest_em.training.train`."""
    if not examples:
        raise ValueError(
            "no training examples: the E-step produced no verified-correct solutions to fine-tune on"
        )
    if not Path(base_model_path).is_dir():
        raise FileNotFoundError(f"base model directory not found: {base_model_path}")
    t_start = time.perf_counter()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from rest_em.tokens import available_cpus, eos_token_ids

    cuda = torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(available_cpus())
    set_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model_path)
    # Always the base weights: ReST-EM restarts every iteration from the base model.
    model = AutoModelForCausalLM.from_pretrained(base_model_path, dtype=torch.float32)
    # No KV cache while training; a cache would also turn off transformers' packed-sequence masks.
    use_cache = getattr(model.config, "use_cache", None)
    model.config.use_cache = False
    if config.lora.enabled:
        from rest_em.training.lora import wrap_lora

        ids = tokenizer.convert_tokens_to_ids(list(trainable_tokens)) if trainable_tokens else []
        unknown = [t for t, i in zip(trainable_tokens, ids) if i is None or i == tokenizer.unk_token_id]
        if unknown:
            raise ValueError(f"training: trainable tokens {unknown} are not in the tokenizer of {base_model_path}")
        model = wrap_lora(model, config.lora, ids)
    eos_id = eos_token_ids(model, tokenizer)[0]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    train_rows, val_rows, stats = _datasets(tokenizer, examples, config, eos_id)

    out = Path(output_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Same name on every rank (ZeRO-3 gathers weights across ranks into it); rank 0 owns it.
    scratch = scratch_dir(out)
    env_snapshot = dict(os.environ)
    single_process = False
    try:
        deepspeed_cfg = None
        if config.backend == "deepspeed":
            deepspeed_cfg = load_deepspeed_config(config.deepspeed_config, config.zero_stage, cpu=not cuda)
            single_process = bool(ensure_single_process_env())
            if not cuda:
                skip_shm_comm_build()
            if config.lora.enabled and zero_stage_of(deepspeed_cfg) == 3:
                raise ValueError("training.lora with ZeRO-3: the merged checkpoint needs the full weights on one rank; "
                                 "use zero_stage 0-2 (LoRA's optimizer state is small) or a full fine-tune")
        world = int(os.environ.get("WORLD_SIZE", "1"))
        is_main = int(os.environ.get("RANK", "0")) == 0
        if is_main and scratch.exists():
            shutil.rmtree(scratch)
        # Under DeepSpeed too: the loss goes through the engine's forward (see _trainer_class), whose ZeRO hooks
        # sit on the submodules the decoder calls.
        supervised_only = config.supervised_logits_only and supports_supervised_loss(model)
        share = _share_prompts(config, model, deepspeed_cfg, supervised_only, bool(val_rows))
        train_items = train_rows
        tokens_processed = stats.num_tokens
        if share:
            train_items = bundle_groups(group_rows(train_rows), config.per_device_batch_size, config.seed)
            tokens_processed = shared_tokens(train_items)
        per_step = (1 if share else config.per_device_batch_size) * config.gradient_accumulation_steps * world
        steps_per_epoch = max(1, math.ceil(len(train_items) / per_step))
        args = _training_arguments(config, scratch, cuda, deepspeed_cfg, steps_per_epoch, evaluate=bool(val_rows),
                                   out=out, bundled=share)
        stopper = None
        if val_rows:
            keep_best = deepspeed_cfg is None or zero_stage_of(deepspeed_cfg) < 3
            if not keep_best:
                logger.warning("early stopping with ZeRO-3: weights are partitioned, so the last (not best) weights are kept")
            stopper = _early_stopping_callback(config.early_stopping_patience, keep_best)
        if share:
            collator = PromptSharedCollator(True, model.config._attn_implementation)
        else:
            collator = PackedCompletionCollator() if config.packing else CompletionOnlyCollator(pad_id)
        trainer = _trainer_class(supervised_only)(
            model=model,
            args=args,
            train_dataset=ListDataset(train_items),
            eval_dataset=ListDataset(val_rows) if val_rows else None,
            data_collator=collator,
            processing_class=tokenizer,
            callbacks=[stopper] if stopper else [],
        )
        logger.info(
            "M-step: %d examples (%d tokens, %d supervised; %d read per epoch), %d steps/epoch x %.2g epochs, backend=%s%s, "
            "%s, %s, %s", len(train_rows), stats.num_tokens, stats.num_label_tokens, tokens_processed, steps_per_epoch,
            config.num_epochs, config.backend, f" (ZeRO-{zero_stage_of(deepspeed_cfg)})" if deepspeed_cfg else "",
            "prompt-shared packed" if share else "packed" if config.packing else "padded",
            "LM head on labels only" if supervised_only else "full LM head",
            f"LoRA r={config.lora.r}" if config.lora.enabled else "full fine-tune",
        )
        t_train = time.perf_counter()
        train_output = trainer.train()
        train_seconds = time.perf_counter() - t_train
        if stopper is not None and stopper.best_state is not None and stopper.best_step != trainer.state.global_step:
            logger.info("restoring the weights of step %d (best val loss %.4f)", stopper.best_step, stopper.best_loss)
            trainer.model.load_state_dict(stopper.best_state)
        if use_cache is not None:
            trainer.model.config.use_cache = use_cache  # the checkpoint keeps the base's setting
        _save(trainer, tokenizer, deepspeed_cfg, scratch, out, is_main)
        if world > 1:
            trainer.accelerator.wait_for_everyone()  # no rank returns before the checkpoint is in place
    finally:
        if single_process:
            _end_single_process_group()
        restore_env(env_snapshot)

    epochs_done = float(trainer.state.epoch or 0.0)
    tokens_seen = tokens_processed * epochs_done
    result = TrainResult(
        checkpoint_dir=str(out),
        steps=int(trainer.state.global_step),
        train_loss=float(train_output.training_loss) if train_output.training_loss is not None else None,
        seconds=time.perf_counter() - t_start,
        tokens_per_s=tokens_seen / max(train_seconds, 1e-9),
        num_examples=len(train_rows),
        loss_curve=[(int(e["step"]), float(e["loss"])) for e in trainer.state.log_history if "loss" in e and "step" in e],
        tokens_trained=int(tokens_seen),
        supervised_tokens_trained=int(stats.num_label_tokens * float(trainer.state.epoch or 0.0)),
        supervised_tokens_per_s=stats.num_label_tokens * epochs_done / max(train_seconds, 1e-9),
        train_seconds=train_seconds,
        tokens_processed=int(tokens_processed),
    )
    logger.info(
        "M-step done: %d steps, train loss %s, %.1fs (%.0f tokens/s) -> %s",
        result.steps, f"{result.train_loss:.4f}" if result.train_loss is not None else "n/a",
        result.seconds, result.tokens_per_s, result.checkpoint_dir,
    )
    return result
