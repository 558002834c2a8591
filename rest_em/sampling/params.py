"""Sampling parameters and completions shared by every E-step backend (pure Python, no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SampleParams:
    """What to sample: every field is passed explicitly to the engine (engines change their defaults).

    ``temperature == 0.0`` means greedy decoding (then ``top_k``/``top_p``/``seed`` are irrelevant and ``n``
    identical completions are returned). ``top_k`` of ``-1`` or ``0`` turns top-k off.
    """

    n: int = 1
    temperature: float = 0.7
    top_k: int = 40
    top_p: float = 1.0
    max_tokens: int = 512
    seed: int | None = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"SampleParams.n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"SampleParams.temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"SampleParams.top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"SampleParams.max_tokens must be >= 1, got {self.max_tokens}")
        if self.top_k < -1:
            raise ValueError(f"SampleParams.top_k must be -1, 0 (off) or positive, got {self.top_k}")
        if isinstance(self.stop, str):
            raise TypeError("SampleParams.stop must be a tuple of strings, not a single string")
        if any(not s for s in self.stop):
            raise ValueError("SampleParams.stop must not contain empty strings")
        # Accept lists from YAML/JSON but store a tuple so the dataclass stays hashable.
        object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def top_k_enabled(self) -> bool:
        return self.top_k > 0


@dataclass(frozen=True)
class Completion:
    """One generated continuation.

    ``text`` is the generated text only (no prompt), with the stop string (if any) removed;
    ``finish_reason`` is ``"stop"`` (EOS or a stop string) or ``"length"`` (``max_tokens`` reached);
    ``num_tokens`` counts generated tokens (up to and including the token that completed a stop
    string or the EOS token).
    """

    text: str
    finish_reason: str
    num_tokens: int


def truncate_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest occurrence of any stop string; return (text, whether it was cut)."""
    cut = -1
    for s in stop:
        i = text.find(s)
        if i != -1 and (cut == -1 or i < cut):
            cut = i
    if cut == -1:
        return text, False
    return text[:cut], True
