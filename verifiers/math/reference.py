"""Reading the reference (gold) answer in each of the formats the datasets use.

``answer``         a bare answer: LaTeX allowed, with or without ``$...$`` or ``\\boxed{}``
``math_solution``  a MATH solution: its last ``\\boxed{}`` is the answer
``gsm8k``          a GSM8K answer field: the text after its last ``####``
"""

from __future__ import annotations

from verifiers.math.extract import gsm8k_hash, last_boxed, read_whole_answer

REFERENCE_FORMATS: tuple[str, ...] = ("answer", "math_solution", "gsm8k")


def read_reference(reference: str, reference_format: str = "answer") -> str | None:
    """The gold answer string, or None when the reference holds none (an ``error`` for the caller)."""
    if reference_format == "answer":
        return read_whole_answer(reference)
    if reference_format == "math_solution":
        return last_boxed(reference)
    if reference_format == "gsm8k":
        return gsm8k_hash(reference)
    raise ValueError(f"unknown reference_format {reference_format!r}; choose from {', '.join(REFERENCE_FORMATS)}")
