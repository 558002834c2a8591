"""Prompt-shared packing: each prompt once in a packed row, followed by all of its completions.

An SFT set holds several correct solutions per problem (``filter.cap``), each row repeating the problem's
prompt, and the prompt is most of a row's tokens. Here the rows that share their prompt tokens form a
*group*, laid out once::

    [ prompt p0..p(P-1) ][ completion 1 ][ completion 2 ] ...
    positions: 0..P-1,   P..P+c1-1,      P..P+c2-1, ...    (restart after the prompt for each completion)

A 4D attention mask lets every prompt token see the prompt causally, and every completion token see the
whole prompt and its own completion causally, never another completion. Each completion's first token is
predicted from the prompt's last hidden state (which is the same for all of them), every later token from
the previous token of its own completion: ``loss_sources`` / ``loss_targets`` name these pairs, and
:func:`shared_supervised_loss` runs the LM head on exactly those hidden states. Every completion thus gets
the hidden states, the loss terms and the gradients it would get in a row of its own (tested to 1e-5);
the prompt's forward and backward run once per group instead of once per row.

Batches (``bundles``) are built before training: groups are shuffled (seeded) and whole groups are put
together up to ``rows_per_batch`` rows (a group with more rows is a batch of its own). The Trainer then
feeds one bundle per step and device.

The mask is dense (T x T booleans per packed row) and needs an attention implementation that takes a
custom 4D mask: ``sdpa`` and ``eager``. Flash-attention's varlen kernels take position ids only; there the
trainer keeps today's position-id packing (one row per completion) rather than force a dense mask
(:func:`supports_shared_mask`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from rest_em.training.sft import IGNORE_INDEX

SHARED_MASK_ATTENTION = ("sdpa", "eager")


def supports_shared_mask(model) -> bool:
    """Whether ``model``'s attention implementation takes a custom 4D mask (``sdpa``, ``eager``)."""
    impl = getattr(model.config, "_attn_implementation", None) or "eager"
    return impl in SHARED_MASK_ATTENTION


def group_rows(rows: Sequence[dict]) -> list[list[dict]]:
    """Tokenized rows (with ``prompt_len``) grouped by identical prompt token ids, in first-seen order."""
    groups: dict[tuple[int, ...], list[dict]] = {}
    for row in rows:
        key = tuple(row["input_ids"][: row["prompt_len"]])
        groups.setdefault(key, []).append(row)
    return list(groups.values())


def bundle_groups(groups: Sequence[list[dict]], rows_per_batch: int, seed: int) -> list[dict]:
    """Shuffled whole groups put together up to ``rows_per_batch`` rows per bundle (one bundle per step)."""
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    bundles: list[list[list[dict]]] = []
    current: list[list[dict]] = []
    n_rows = 0
    for i in order:
        g = groups[i]
        if current and n_rows + len(g) > rows_per_batch:
            bundles.append(current)
            current, n_rows = [], 0
        current.append(g)
        n_rows += len(g)
    if current:
        bundles.append(current)
    return [{"groups": b, "input_ids": [t for g in b for r in g for t in r["input_ids"]]} for b in bundles]


def bundle_rows(bundle: dict) -> list[dict]:
    """The tokenized rows of a bundle, group by group."""
    return [r for g in bundle["groups"] for r in g]


def shared_tokens(bundles: Sequence[dict]) -> int:
    """Tokens the model reads for ``bundles`` when prompts are shared (each group's prompt once)."""
    return sum(g[0]["prompt_len"] + sum(len(r["input_ids"]) - r["prompt_len"] for r in g)
               for b in bundles for g in b["groups"])


def shared_layout(groups: Sequence[list[dict]]) -> dict:
    """Plain-list layout of ``groups`` packed prompt-shared: ids, positions, segment/group per token, loss pairs."""
    ids: list[int] = []
    pos: list[int] = []
    group_of: list[int] = []
    segment_of: list[int] = []  # 0 = prompt, j = j-th completion of the group
    sources: list[int] = []
    targets: list[int] = []
    for gi, group in enumerate(groups):
        p = group[0]["prompt_len"]
        prompt = group[0]["input_ids"][:p]
        start = len(ids)
        ids += prompt
        pos += range(p)
        group_of += [gi] * p
        segment_of += [0] * p
        last_prompt = start + p - 1
        for j, row in enumerate(group, start=1):
            if row["input_ids"][:p] != prompt or row["prompt_len"] != p:
                raise ValueError("prompt-shared packing: rows of one group must have the same prompt tokens")
            comp, labels = row["input_ids"][p:], row["labels"][p:]
            off = len(ids)
            ids += comp
            pos += range(p, p + len(comp))
            group_of += [gi] * len(comp)
            segment_of += [j] * len(comp)
            for k, label in enumerate(labels):
                if label != IGNORE_INDEX:
                    sources.append(last_prompt if k == 0 else off + k - 1)
                    targets.append(label)
    return {"input_ids": ids, "position_ids": pos, "group": group_of, "segment": segment_of,
            "loss_sources": sources, "loss_targets": targets}


def shared_attention_mask(group_of, segment_of, attn_implementation: str = "sdpa", dtype=None):
    """(1, 1, T, T) mask: query q sees key k when both are in one group, k <= q, and k is a prompt token or in
    q's own completion. Boolean (True = attend) for sdpa; additive 0 / dtype-min for eager."""
    import torch

    g = torch.as_tensor(group_of)
    s = torch.as_tensor(segment_of)
    idx = torch.arange(len(g))
    allowed = (g[:, None] == g[None, :]) & (idx[None, :] <= idx[:, None]) & ((s[None, :] == 0) | (s[None, :] == s[:, None]))
    allowed = allowed[None, None]
    if attn_implementation == "sdpa":
        return allowed
    dtype = dtype or torch.float32
    mask = torch.zeros(allowed.shape, dtype=dtype)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)


class PromptSharedCollator:
    """Bundles (from :func:`bundle_groups`) into one packed row each.

    ``share=True``: prompt-shared (module docstring): ``input_ids``, ``position_ids``, ``attention_mask``
    (4D), ``loss_sources``, ``loss_targets``, and ``shift_labels`` (the targets, so the Trainer counts the
    supervised tokens for gradient accumulation). ``share=False``: the bundle's rows packed one after the
    other exactly as :class:`~rest_em.training.sft.PackedCompletionCollator` does (position-id packing, for
    flash-attention varlen kernels and as the unshared reference on the same batches).
    """

    def __init__(self, share: bool = True, attn_implementation: str = "sdpa") -> None:
        if share and attn_implementation not in SHARED_MASK_ATTENTION:
            raise ValueError(f"prompt-shared packing needs attention {SHARED_MASK_ATTENTION}, got {attn_implementation!r}")
        self.share = share
        self.attn_implementation = attn_implementation

    def __call__(self, features: list[dict]) -> dict:
        import torch

        groups = [g for f in features for g in f["groups"]]
        if not self.share:
            from rest_em.training.sft import PackedCompletionCollator

            return PackedCompletionCollator()([r for g in groups for r in g])
        lay = shared_layout(groups)
        targets = torch.tensor(lay["loss_targets"], dtype=torch.long)
        return {
            "input_ids": torch.tensor([lay["input_ids"]], dtype=torch.long),
            "position_ids": torch.tensor([lay["position_ids"]], dtype=torch.long),
            "attention_mask": shared_attention_mask(lay["group"], lay["segment"], self.attn_implementation),
            "loss_sources": torch.tensor(lay["loss_sources"], dtype=torch.long),
            "loss_targets": targets,
            "shift_labels": targets[None],
        }


def shared_supervised_loss(model, batch: dict, num_items_in_batch=None):
    """Cross-entropy of ``loss_targets`` from the hidden states at ``loss_sources`` (mean, or sum divided by
    ``num_items_in_batch`` as the Trainer passes it under gradient accumulation)."""
    import torch.nn.functional as F

    inputs = {k: batch[k] for k in ("input_ids", "position_ids", "attention_mask") if k in batch}
    hidden = model.get_decoder()(**inputs, use_cache=False).last_hidden_state[0]
    logits = model.get_output_embeddings()(hidden[batch["loss_sources"]]).float()
    if num_items_in_batch is None:
        return F.cross_entropy(logits, batch["loss_targets"], reduction="mean")
    return F.cross_entropy(logits, batch["loss_targets"], reduction="sum") / num_items_in_batch
