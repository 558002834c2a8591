"""The three-way verdict shared by every verifier.

``pass``  the model's answer is correct (all unit tests pass).
``fail``  the model was wrong: wrong answer, failing test, timeout, crash of the candidate program.
``error`` our side broke: sandbox unavailable, a reference that cannot be parsed, a verifier bug.

An ``error`` is never folded into pass or fail: it is counted and reported, and never enters the
SFT set.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class Outcome(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"

    def __str__(self) -> str:  # "pass", not "Outcome.PASS", in logs and f-strings
        return self.value


@dataclass(frozen=True)
class Verdict:
    """One verifier decision.

    ``reason`` is short and machine-readable (``correct``, ``wrong_answer``, ``no_answer``,
    ``timeout``, ``unparseable_reference``, ...); ``message`` is for humans and may be empty.
    """

    outcome: Outcome
    reason: str
    message: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.outcome, Outcome):
            object.__setattr__(self, "outcome", Outcome(self.outcome))
        if not self.reason:
            raise ValueError("a Verdict needs a non-empty reason")

    @classmethod
    def passed(cls, reason: str = "correct", message: str = "") -> "Verdict":
        return cls(Outcome.PASS, reason, message)

    @classmethod
    def failed(cls, reason: str, message: str = "") -> "Verdict":
        return cls(Outcome.FAIL, reason, message)

    @classmethod
    def errored(cls, reason: str, message: str = "") -> "Verdict":
        return cls(Outcome.ERROR, reason, message)

    @property
    def is_pass(self) -> bool:
        return self.outcome is Outcome.PASS

    @property
    def is_error(self) -> bool:
        return self.outcome is Outcome.ERROR

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used in ``verdicts.jsonl``, the CLI and the service."""
        return {"verdict": self.outcome.value, "reason": self.reason, "message": self.message}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> "Verdict":
        return cls(Outcome(row["verdict"]), row["reason"], row.get("message", ""))
