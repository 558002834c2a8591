"""docs/running.md's config reference is generated from the fields' help texts and must match them."""

from __future__ import annotations

import dataclasses
import typing

from rest_em import registry
from rest_em.config import Config
from rest_em.config_docs import DOC, reference, splice


def test_docs_match_the_config_fields():
    doc = DOC.read_text(encoding="utf-8")
    assert splice(doc, reference()) == doc, "docs/running.md is stale: run python -m rest_em.config_docs --write"


def test_every_field_has_help_text():
    def walk(cls, prefix=""):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.metadata.get("internal") or f.metadata.get("sections"):
                continue  # loading messages; the algorithm sections, walked below from the registry
            if dataclasses.is_dataclass(hints[f.name]):
                yield from walk(hints[f.name], f"{prefix}{f.name}.")
            yield f"{prefix}{f.name}", f.metadata.get("help", "")

    sections = [(cls.Section, f"{cls.section_key()}.") for cls in registry.algorithms().values() if cls.Section]
    missing = [name for name, text in walk(Config) if not text]
    missing += [name for cls, prefix in sections for name, text in walk(cls, prefix) if not text]
    assert len(sections) >= 4 and missing == []


def test_reference_has_every_algorithm_section_and_what_it_does_not_read():
    text = reference()
    for cls in registry.algorithms().values():
        if cls.section_key():
            assert f"### `{cls.section_key()}`" in text
        assert f"| `{cls.name}` |" in text
    assert "`training.dtype`" not in text  # one dtype key: model.dtype


def test_reference_lists_defaults_and_nested_keys():
    text = reference()
    assert "| `transfer.name` | `null` |" in text
    assert "| `n` | `32` | samples per train problem" in text
    assert "| `max_error_rate` | `0.05` |" in text
