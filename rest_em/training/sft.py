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
    """``{"input_ids", "labels"}`` for one example, or None when the prompt leaves no room for the completion."""
    prompt_ids = encode_prompt(tokenizer, prompt)
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [eos_id]
    if len(prompt_ids) >= max_seq_len:
        return None
    input_ids = (prompt_ids + completion_ids)[:max_seq_len]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + completion_ids)[:max_seq_len]
    return {"input_ids": input_ids, "labels": labels, "truncated": len(prompt_ids) + len(completion_ids) > max_seq_len}


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


class ListDataset:
    """A map-style dataset over tokenized rows (what ``Trainer`` needs; exposes lengths for grouping)."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]
