"""Named policies for getting a program out of a model's response.

    extract_code(text, "last_fenced_block")   # the last ```...``` block; "" when there is none
    extract_code(text, "whole_text")          # the response as it is
    extract_code(text, "auto")                # the last fenced block if there is one, else the whole text

A fence may name a language (```python, ```py, ```python3, ```Python); a block the model never closed
(it ran out of tokens) still counts when it is the last one. An empty result means ``no_code``.
"""

from __future__ import annotations

import re
from typing import Callable

# An opening fence at the start of a line, an optional info string, the body, and a closing fence (or
# the end of the text for a block the model never closed).
_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.M | re.S)
_NON_PYTHON = {"text", "txt", "output", "console", "bash", "sh", "shell", "json", "plaintext", "markdown", "md"}


def _blocks(text: str) -> list[str]:
    blocks = []
    for m in _FENCE.finditer(text):
        lang = m.group(1).lower()
        if lang in _NON_PYTHON:
            continue  # sample output or a shell transcript is not the program
        blocks.append(m.group(2))
    return blocks


def last_fenced_block(text: str) -> str:
    blocks = _blocks(text)
    return blocks[-1] if blocks else ""


def whole_text(text: str) -> str:
    return text


def auto(text: str) -> str:
    if "```" in text:
        block = last_fenced_block(text)
        if block.strip():
            return block
    return text


POLICIES: dict[str, Callable[[str], str]] = {
    "last_fenced_block": last_fenced_block,
    "whole_text": whole_text,
    "auto": auto,
}


def extract_code(text: str, policy: str = "auto") -> str:
    """The program in ``text`` under the named ``policy`` ("" when there is none)."""
    try:
        fn = POLICIES[policy]
    except KeyError:
        raise ValueError(f"unknown extraction policy {policy!r}; choose one of {', '.join(sorted(POLICIES))}") from None
    return fn(text)
