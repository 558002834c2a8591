"""SFT data for the M-step: tokenize (prompt, completion) pairs with the loss on completion tokens only.

Each example becomes ``prompt_ids + completion_ids + [eos]``; ``labels`` are ``-100`` on the prompt
tokens (and, after collation, on padding), so the cross-entropy covers exactly the solution and its
EOS. Prompt and completion are tokenized separately, which is how the E-step produced them (the
sampler continued from the prompt's tokens), so the model is trained on the token boundary it sees at
sampling time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from rest_em.tokens import encode_prompt

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclass
class SFTStats:
    """What tokenization did to the examples (logged by the trainer, checked by tests)."""

    num_examples: int = 0
    num_dropped_long_prompt: int = 0  # prompt alone fills max_seq_len: nothing left to learn from
    num_truncated: int = 0  # completion cut at max_seq_len (its EOS is lost)
    num_tokens: int = 0  # all tokens kept (prompt + completion)
    num_label_tokens: int = 0  # tokens that carry loss
    dropped_indices: list[int] = field(default_factory=list)


def tokenize_example(tokenizer, prompt: str, completion: str, max_seq_len: int, eos_id: int) -> dict | None:
    """``{"input_ids", "labels", "prompt_len"}`` for one example, or None when the prompt leaves no room for the
    completion."""
    prompt_ids = encode_prompt(tokenizer, prompt)
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [eos_id]
    if len(prompt_ids) >= max_seq_len:
        return None
    input_ids = (prompt_ids + completion_ids)[:max_seq_len]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + completion_ids)[:max_seq_len]
    return {"input_ids": input_ids, "labels": labels, "prompt_len": len(prompt_ids),
            "truncated": len(prompt_ids) + len(completion_ids) > max_seq_len}


def tokenize_examples(
    tokenizer, examples: Sequence[dict], max_seq_len: int, eos_id: int
) -> tuple[list[dict], SFTStats]:
    """Tokenize every example; raise ``ValueError`` naming the first malformed row."""
    rows: list[dict] = []
    stats = SFTStats()
    for i, ex in enumerate(examples):
        if not isinstance(ex, dict) or not isinstance(ex.get("prompt"), str) or not isinstance(ex.get("completion"), str):
            where = f" (problem_id={ex.get('problem_id')!r})" if isinstance(ex, dict) else ""
            raise ValueError(f"training example {i}{where} needs string fields 'prompt' and 'completion'")
        row = tokenize_example(tokenizer, ex["prompt"], ex["completion"], max_seq_len, eos_id)
        if row is None:
            stats.num_dropped_long_prompt += 1
            stats.dropped_indices.append(i)
            continue
        stats.num_truncated += int(row.pop("truncated"))
        stats.num_tokens += len(row["input_ids"])
        stats.num_label_tokens += sum(1 for t in row["labels"] if t != IGNORE_INDEX)
        rows.append(row)
    stats.num_examples = len(rows)
    if stats.num_dropped_long_prompt:
        logger.warning(
            "dropped %d of %d training examples whose prompt alone has >= max_seq_len=%d tokens",
            stats.num_dropped_long_prompt, len(examples), max_seq_len,
        )
    if stats.num_truncated:
        logger.warning(
            "truncated %d training examples to max_seq_len=%d tokens (they lose their EOS)",
            stats.num_truncated, max_seq_len,
        )
    return rows, stats


class CompletionOnlyCollator:
    """Right-pads a batch of ``{"input_ids", "labels"}``; padding gets ``pad_id`` and label ``-100``."""

    def __init__(self, pad_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_id = pad_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict]) -> dict:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            width = (width + m - 1) // m * m
        input_ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(features), width), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            input_ids[row, :n] = torch.tensor(f["input_ids"], dtype=torch.long)
            labels[row, :n] = torch.tensor(f["labels"], dtype=torch.long)
            attention[row, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}


class PackedCompletionCollator:
    """Padding-free batches: the batch's rows concatenated into one row of shape ``(1, total_tokens)``.

    ``position_ids`` restart at 0 for every example and there is no ``attention_mask``, which is how
    transformers recognises packed sequences (``find_packed_sequence_indices``): its sdpa/eager masks
    become block-causal, so no token attends across an example boundary (flash-attention kernels use
    the same position ids). The model must run with ``use_cache=False`` (a KV cache turns the detection
    off; the trainer sets it). The first token of every example is a prompt token, labelled ``-100``,
    so no loss crosses a boundary either. The loss equals the padded batch's loss (tested).
    """

    def __call__(self, features: list[dict]) -> dict:
        import torch

        input_ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for f in features:
            n = len(f["input_ids"])
            input_ids += f["input_ids"]
            # The first label of an example would be predicted from the previous example's last token.
            labels += [IGNORE_INDEX] + list(f["labels"][1:])
            positions += range(n)
        return {
            "input_ids": torch.tensor([input_ids], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([positions], dtype=torch.long),
        }


def supervised_loss(model, batch: dict, num_items_in_batch=None):
    """Causal-LM loss computed from the LM head at supervised positions only.

    The prompt makes up most of an SFT row but carries no loss, so running the LM head (hidden x vocab,
    the largest matmul of a small model) and the softmax over every position is wasted work. Here the
    decoder runs on the whole batch, and the head only where the next token has a label. Same value as
    ``model(**batch).loss`` (mean over supervised tokens, or sum / ``num_items_in_batch`` when the
    Trainer passes it for gradient accumulation).
    """
    import torch.nn.functional as F

    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    hidden = model.get_decoder()(**inputs, use_cache=False).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    logits = model.get_output_embeddings()(hidden[:, :-1][keep]).float()
    if num_items_in_batch is None:
        return F.cross_entropy(logits, targets[keep], reduction="mean")
    return F.cross_entropy(logits, targets[keep], reduction="sum") / num_items_in_batch


def supports_supervised_loss(model) -> bool:
    """True for models whose logits are exactly ``lm_head(decoder(x))`` (no soft-capping or scaling)."""
    cfg = model.config
    if getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None) not in (None, 1, 1.0):
        return False
    try:
        return model.get_decoder() is not None and model.get_output_embeddings() is not None
    except (AttributeError, NotImplementedError):
        return False


class ListDataset:
    """A map-style dataset over tokenized rows (what ``Trainer`` needs; exposes lengths for grouping)."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]
