"""What a peer trainer sends as a reference ("label"), turned into a verifier item.

OpenRLHF's ``/get_reward`` labels, veRL's ``ground_truth`` and the ``label`` column of a TRL dataset
all carry the reference in one field. The convention (docs/service.md, "use it from your trainer"):

* a string that is not a JSON object, or a number: a **math** answer (``"42"``, ``"\\frac{1}{2}"``);
* a JSON object (or a string holding one): ``{"domain": ..., "reference": ...}`` for math,
  ``{"domain": "code", "tests": {...}}`` for code (the code verifier's test styles). Other keys
  (``reference_format``, ``response_format``, ``compare`` ...) travel to the domain verifier.
  Without ``domain``, an object with ``tests`` is code and one with ``reference`` is math.

    item_from_label(label, response, item_id="q3")   # {"id": "q3", "domain": "math", "reference": ..., "response": ...}

A label that fits none of these raises :class:`LabelError` naming what is wrong.

The response a peer sends may still carry the tokenizer's end-of-sequence text (OpenRLHF decodes with
``skip_special_tokens=False``); :func:`strip_end_tokens` removes a trailing run of such tokens so that a
program without a code fence still compiles.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["LabelError", "item_from_label", "parse_label", "response_from_query", "strip_end_tokens"]


class LabelError(ValueError):
    """A label (reference) that is not in the documented convention."""


# Special tokens that end a sequence and show up in decoded text: ChatML/Qwen/Llama-3 style <|...|>,
# DeepSeek's full-width <｜...｜>, and the bare names of Llama-2, Gemma and T5 style tokenizers.
_END_TOKEN = r"(?:<\|[^<>|\s]{1,64}\|>|<｜[^<>｜]{1,64}｜>|</s>|<eos>|<end_of_turn>|<pad>|<\|endoftext\|>)"
_TRAILING_END_TOKENS = re.compile(rf"(?:\s*{_END_TOKEN})+\s*$")


def strip_end_tokens(text: str) -> str:
    """``text`` without a trailing run of end-of-sequence / padding token strings."""
    return _TRAILING_END_TOKENS.sub("", text)


def response_from_query(query: str, prompt: str | None) -> str | None:
    """The response part of OpenRLHF's ``query`` (prompt + response, decoded): the text after the prompt.

    The prompt is looked for as a prefix, then anywhere (a tokenizer may add a BOS before it), then
    with surrounding whitespace trimmed. None when it is not in the query: the caller reports it, since
    scoring the prompt's own text as the answer would be silently wrong. No prompt: the whole query."""
    if prompt is None or prompt == "":
        return query
    if query.startswith(prompt):
        return query[len(prompt):]
    at = query.find(prompt)
    if at >= 0:
        return query[at + len(prompt):]
    trimmed = prompt.strip()
    if trimmed:
        at = query.find(trimmed)
        if at >= 0:
            return query[at + len(trimmed):]
    return None


def parse_label(label: Any, default_domain: str = "math") -> dict[str, Any]:
    """The item fields (``domain`` and its reference fields, no ``id``/``response``) of one label."""
    if isinstance(label, bool) or label is None:
        raise LabelError(f"a label must be a math answer (string or number) or a JSON object, got {label!r}")
    if isinstance(label, (int, float)):
        return {"domain": default_domain if default_domain != "code" else "math", "reference": str(label)}
    if isinstance(label, str):
        text = label.strip()
        if text.startswith("{"):
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise LabelError(f"the label starts with '{{' but is not valid JSON: {exc}") from None
            return _from_object(obj, default_domain)
        if default_domain == "code":
            raise LabelError("a code label must be a JSON object with 'tests' (the code verifier's test styles)")
        return {"domain": default_domain, "reference": label}
    if isinstance(label, dict):
        return _from_object(label, default_domain)
    raise LabelError(f"a label must be a string, a number or a JSON object, got {type(label).__name__}")


def _from_object(obj: Any, default_domain: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise LabelError(f"a JSON label must be an object, got {type(obj).__name__}")
    fields = {k: v for k, v in obj.items() if k not in ("id", "response")}
    domain = fields.get("domain")
    if domain is None:
        domain = "code" if "tests" in fields else ("math" if "reference" in fields else default_domain)
        fields["domain"] = domain
    if not isinstance(domain, str) or not domain:
        raise LabelError(f"the label's 'domain' must be a non-empty string, got {domain!r}")
    if domain == "math" and "reference" not in fields:
        raise LabelError("a math label object needs 'reference' (the gold answer)")
    if domain == "code" and "tests" not in fields:
        raise LabelError("a code label object needs 'tests' (an object with a 'style')")
    if "reference" in fields and isinstance(fields["reference"], (int, float)) and not isinstance(fields["reference"], bool):
        fields["reference"] = str(fields["reference"])
    return fields


def item_from_label(label: Any, response: str, item_id: str | int, default_domain: str = "math") -> dict[str, Any]:
    """A ``/v1/verify`` item (``id``, ``domain``, ``response`` and the label's reference fields)."""
    return {"id": item_id, **parse_label(label, default_domain), "response": response}
