"""LoRA adapters through peft (``training.lora``): train low-rank adapters instead of every weight.

    model = wrap_lora(model, config.lora, trainable_token_ids=[...])   # a peft model
    ... train ...
    publish_model(model, tokenizer, out)                               # merged: a plain HF checkpoint

Each M-step puts a fresh adapter on the model it starts from: ReST-EM's restart from the base model
(``mstep.init: base``), or, with ``mstep.init: previous``, on the previous iteration's merged checkpoint,
so the adapters add up. The adapter is merged into the weights when the checkpoint is written
(:mod:`rest_em.training.publish`): vLLM, transformers and the evaluation load it as any other model.

``trainable_token_ids``: rows of the input embedding (and of a tied or untied LM head) that train in full,
e.g. RCRL's added reward tokens, whose embeddings start as the mean row and mean nothing until trained
(peft's ``trainable_token_indices``; only those rows are updated and saved).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

logger = logging.getLogger(__name__)


def peft_lora_config(lora, trainable_token_ids: Sequence[int] = ()):
    """peft's ``LoraConfig`` for ``lora`` (:class:`rest_em.training.LoRAConfig`), e.g. for a TRL trainer's
    ``peft_config``; raises ImportError naming the extra when peft is missing."""
    try:
        from peft import LoraConfig, TaskType
    except ImportError as exc:  # pragma: no cover - the train extra brings peft
        raise ImportError("training.lora.r is set but peft is not installed: pip install 'rest-em[train]' "
                          "(or pip install peft)") from exc
    kwargs = {}
    if trainable_token_ids:
        kwargs["trainable_token_indices"] = sorted(set(int(i) for i in trainable_token_ids))
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=lora.r,
        lora_alpha=lora.alpha if lora.alpha is not None else 2 * lora.r,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules) if lora.target_modules else "all-linear",
        bias="none",
        **kwargs,
    )


def wrap_lora(model, lora, trainable_token_ids: Sequence[int] = ()):
    """``model`` with a fresh LoRA adapter (``lora``: :class:`rest_em.training.LoRAConfig`); raises ImportError
    naming the extra when peft is missing."""
    cfg = peft_lora_config(lora, trainable_token_ids)
    from peft import get_peft_model

    peft_model = get_peft_model(model, cfg)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in peft_model.parameters())
    logger.info("LoRA r=%d alpha=%s on %s: %d of %d parameters train (%.2f%%)%s", lora.r, cfg.lora_alpha,
                lora.target_modules or "all linear layers", trainable, total, 100.0 * trainable / max(total, 1),
                f", {len(cfg.trainable_token_indices)} embedding rows" if trainable_token_ids else "")
    return peft_model


def base_of(model):
    """The transformers model under a peft wrapper (the model itself otherwise)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model
