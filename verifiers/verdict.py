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

# Every reason a verifier gives a ``fail`` (the candidate was wrong); configs that name fail reasons
# (``grpo.partial_credit``) are checked against it.
FAIL_REASONS = frozenset({
    "wrong_answer",    # math: an answer was found and is not the reference; code: a test's output differs
    "no_answer",       # math: no extraction policy found an answer
    "no_code",         # code: no program in the response
    "syntax_error", "runtime_error",  # code: the program does not compile / raised
    "timeout", "memory_limit", "output_limit", "resource_limit",  # the candidate exceeded a limit
})


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
    ``extracted_by`` names how the judged answer was found in the response (a math extraction policy
    such as ``last_boxed``, or ``whole_response`` for ``response_format=answer``); None when no
    answer was extracted or the domain does not extract one (code). ``answer`` is the answer a custom
    verifier (``verifiers.custom``) reported for maj@k; None for the built-in verifiers.
    """

    outcome: Outcome
    reason: str
    message: str = ""
    extracted_by: str | None = None
    answer: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.outcome, Outcome):
            object.__setattr__(self, "outcome", Outcome(self.outcome))
        if not self.reason:
            raise ValueError("a Verdict needs a non-empty reason")

    @classmethod
    def passed(cls, reason: str = "correct", message: str = "", extracted_by: str | None = None,
               answer: str | None = None) -> "Verdict":
        return cls(Outcome.PASS, reason, message, extracted_by, answer)

    @classmethod
    def failed(cls, reason: str, message: str = "", extracted_by: str | None = None, answer: str | None = None) -> "Verdict":
        return cls(Outcome.FAIL, reason, message, extracted_by, answer)

    @classmethod
    def errored(cls, reason: str, message: str = "", extracted_by: str | None = None, answer: str | None = None) -> "Verdict":
        return cls(Outcome.ERROR, reason, message, extracted_by, answer)

    @property
    def is_pass(self) -> bool:
        return self.outcome is Outcome.PASS

    @property
    def is_error(self) -> bool:
        return self.outcome is Outcome.ERROR

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used in ``verdicts.jsonl``, the CLI and the service.

        ``extracted_by`` is present only when an answer was extracted, so code verdict rows keep
        their three keys.
        """
        row: dict[str, Any] = {"verdict": self.outcome.value, "reason": self.reason, "message": self.message}
        if self.extracted_by is not None:
            row["extracted_by"] = self.extracted_by
        if self.answer is not None:
            row["answer"] = self.answer
        return row

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> "Verdict":
        return cls(Outcome(row["verdict"]), row["reason"], row.get("message", ""), row.get("extracted_by"), row.get("answer"))
