"""Verifiers by domain, behind one protocol, for the CLI, the HTTP service and the pipeline.

    verifier = get_verifier("math", timeout_s=5.0)
    items = [verifier.parse_item(row, where=f"{path}:{lineno}") for lineno, row in rows]
    verdicts = verifier.verify_batch(items)      # same order as items
    verifier.close()

Domain modules are imported lazily: asking for ``math`` never imports the Docker SDK.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Collection, Iterable, Protocol, Sequence

from verifiers.verdict import Verdict

# domain -> "module:factory"; the factory takes keyword config overrides.
DOMAINS: dict[str, str] = {
    "math": "verifiers.math:MathVerifier.from_options",
    "code": "verifiers.code:CodeVerifier.from_options",
    "custom": "verifiers.custom:CustomVerifier.from_options",  # a user's function (verifier.custom)
}


class Verifier(Protocol):
    domain: str

    def parse_item(self, row: dict[str, Any], where: str = "") -> Any:
        """Validate one input row; raise ``verifiers.io.InputError`` naming ``where`` and the problem."""

    def verify_batch(self, items: Sequence[Any]) -> list[Verdict]:
        """Verdicts in the order of ``items``; never raises for a bad candidate (that is a verdict)."""

    def close(self) -> None:
        """Release worker processes / containers."""


def check_option_names(options: Iterable[str], known: Collection[str], what: str) -> None:
    """Raise ``ValueError`` for the first unknown option, with a "did you mean" hint (or the known names)."""
    for key in options:
        if key not in known:
            hint = difflib.get_close_matches(key, list(known), n=1)
            raise ValueError(
                f"unknown {what} option {key!r}"
                + (f"; did you mean {hint[0]!r}?" if hint else f"; known: {', '.join(sorted(known))}")
            )


def get_verifier(domain: str, **options: Any) -> Verifier:
    try:
        target = DOMAINS[domain]
    except KeyError:
        raise ValueError(f"unknown domain {domain!r}; choose one of {', '.join(sorted(DOMAINS))}") from None
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj(**options)
