"""docs/running.md's config reference is generated from the fields' help texts and must match them."""

from __future__ import annotations

import dataclasses
import typing

from rest_em.config import Config
from rest_em.config_docs import DOC, reference, splice


def test_docs_match_the_config_fields():
    doc = DOC.read_text(encoding="utf-8")
    assert splice(doc, reference()) == doc, "docs/running.md is stale: run python -m rest_em.config_docs --write"


def test_every_field_has_help_text():
    def walk(cls, prefix=""):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                yield from walk(hints[f.name], f"{prefix}{f.name}.")
            yield f"{prefix}{f.name}", f.metadata.get("help", "")

    missing = [name for name, text in walk(Config) if not text]
    assert missing == []


def test_reference_lists_defaults_and_nested_keys():
    text = reference()
    assert "| `transfer.name` | `null` |" in text
    assert "| `n` | `32` | samples per train problem" in text
    assert "| `max_error_rate` | `0.05` |" in text
