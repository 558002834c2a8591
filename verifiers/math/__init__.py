"""The math verifier: is the model's final answer the reference answer?

    from verifiers.math import MathVerifier, MathItem, extract_answer

    with MathVerifier.from_options(timeout_s=5.0, workers=2) as verifier:
        verdicts = verifier.verify_batch([MathItem("p1", "\\\\frac{1}{2}", "... so \\\\boxed{0.5}")])
        verifier.verify_one("42", "The answer is 42.")              # Verdict(pass, correct)
        verifier.equivalent_batch([("1/2", "0.5"), ("2", "3")])     # [True, False]

    extract_answer("... #### 18")                                    # "18"

Each check (extract the answer, undo MATH's conventions, compare with Math-Verify) runs in a worker
process with a wall-clock limit; see ``verifiers.workers``. Verdict reasons:

pass   ``correct`` (the message adds "equal as percent" / "equal as approximation" for those rules)
fail   ``wrong_answer``, ``no_answer`` (no policy found an answer), ``timeout``, ``resource_limit``
error  ``unparseable_reference``, ``verifier_crashed``, ``verifier_exception``
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from typing import Any, Sequence

from verifiers.io import InputError
from verifiers.math.equivalence import CheckTask, EquivalenceTask, run_task, warm_up
from verifiers.math.extract import (
    DEFAULT_POLICIES,
    FREE_TEXT_POLICIES,
    POLICIES,
    RESPONSE_FORMATS,
    check_policies,
    check_response_format,
    extract_answer,
)
from verifiers.math.normalize import (
    DECIMAL_COMMA_MODES,
    DEFAULT_NUMERIC_TOLERANCE,
    PERCENT_MODES,
    AnswerRules,
)
from verifiers.math.reference import REFERENCE_FORMATS
from verifiers.registry import check_option_names
from verifiers.verdict import Verdict
from verifiers.workers import TaskStatus, WorkerPool

__all__ = [
    "DECIMAL_COMMA_MODES",
    "DEFAULT_NUMERIC_TOLERANCE",
    "PERCENT_MODES",
    "AnswerRules",
    "DEFAULT_POLICIES",
    "FREE_TEXT_POLICIES",
    "POLICIES",
    "REFERENCE_FORMATS",
    "RESPONSE_FORMATS",
    "MathItem",
    "MathVerifier",
    "MathVerifyConfig",
    "extract_answer",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MathVerifyConfig:
    """Settings of the math verifier; ``MathVerifier.from_options`` builds one from keywords."""

    timeout_s: float = 5.0  # wall-clock limit per check; the worker is killed past it
    workers: int | None = None  # worker processes; None = one per CPU core
    extraction_policies: tuple[str, ...] = DEFAULT_POLICIES  # tried in order; see verifiers.math.extract
    # How to read a response when its item does not say: "text" (extract with the policies) or
    # "answer" (the whole response is the answer).
    response_format: str = "text"
    chunk_size: int = 16  # items sent to a worker per round trip
    memory_mb: int | None = 2048  # address-space cap per worker (a 10^6-digit number must not eat the box)
    # Identical normalised answer strings pass without asking sympy. Off only to test Math-Verify itself.
    string_shortcut: bool = True
    # Policy choices among the number rules (verifiers.math.normalize.AnswerRules): "auto" | "never" |
    # "always" (is 3,5 three and a half?), "either" | "number" | "fraction" (does 10\% equal 0.1?), and
    # the coarsest relative precision at which a decimal equals a symbolic reference (0 = never).
    decimal_comma: str = "auto"
    percent: str = "either"
    numeric_tolerance: float = DEFAULT_NUMERIC_TOLERANCE

    def __post_init__(self) -> None:
        if isinstance(self.extraction_policies, str):
            raise ValueError(
                f"extraction_policies must be a list of names, got the string {self.extraction_policies!r}"
            )
        object.__setattr__(self, "extraction_policies", check_policies(tuple(self.extraction_policies)))
        if isinstance(self.numeric_tolerance, str):  # "1e-4" from the command line (YAML reads it as text)
            try:
                object.__setattr__(self, "numeric_tolerance", float(self.numeric_tolerance))
            except ValueError:
                raise ValueError(f"numeric_tolerance must be a number, got {self.numeric_tolerance!r}") from None
        check_response_format(self.response_format)
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        self.rules  # validates decimal_comma, percent and numeric_tolerance

    @property
    def rules(self) -> AnswerRules:
        return AnswerRules(self.decimal_comma, self.percent, self.numeric_tolerance)


@dataclass(frozen=True)
class MathItem:
    """One check: does ``response`` reach the answer in ``reference``?

    ``response_format`` None means the verifier's configured default (``MathVerifyConfig.response_format``).
    """

    id: str | int
    reference: str
    response: str
    reference_format: str = "answer"
    response_format: str | None = None


_ROW_TYPES: dict[str, tuple[type, ...]] = {"id": (str, int), "reference": (str,), "response": (str,)}


class MathVerifier:
    """Math answer verifier backed by a warm pool of worker processes (a context manager)."""

    domain = "math"

    def __init__(self, config: MathVerifyConfig | None = None) -> None:
        self.config = config or MathVerifyConfig()
        self._pool: WorkerPool | None = None
        self._pool_lock = threading.Lock()  # the service's threads must not start two pools

    @classmethod
    def from_options(cls, **options: Any) -> "MathVerifier":
        """Build from keyword overrides of ``MathVerifyConfig`` (``timeout_s=2``, ``workers=4``,
        ``extraction_policies=["last_boxed", "answer_is"]``, ``response_format="answer"``, ...).

        ``None`` values are ignored (a CLI option left unset); an unknown key is a ``ValueError``.
        """
        check_option_names(options, {f.name for f in dataclasses.fields(MathVerifyConfig)}, "math verifier")
        return cls(MathVerifyConfig(**{k: v for k, v in options.items() if v is not None}))

    def parse_item(self, row: dict[str, Any], where: str = "") -> MathItem:
        """Validate one input row; raise ``InputError`` naming ``where`` and what is wrong."""
        prefix = f"{where}: " if where else ""
        if not isinstance(row, dict):
            raise InputError(f"{prefix}expected a JSON object, got {type(row).__name__}")
        for key, types in _ROW_TYPES.items():
            if key not in row:
                raise InputError(f"{prefix}missing key {key!r} (a math row needs id, reference, response)")
            value = row[key]
            if isinstance(value, bool) or not isinstance(value, types):
                expected = " or ".join(t.__name__ for t in types)
                raise InputError(f"{prefix}{key!r} must be {expected}, got {type(value).__name__}")
        fmt = row.get("reference_format", "answer")
        if fmt not in REFERENCE_FORMATS:
            raise InputError(
                f"{prefix}unknown reference_format {fmt!r}; choose from {', '.join(REFERENCE_FORMATS)}"
            )
        response_format = row.get("response_format")
        if response_format is not None and response_format not in RESPONSE_FORMATS:
            raise InputError(
                f"{prefix}unknown response_format {response_format!r}; choose from {', '.join(RESPONSE_FORMATS)}"
            )
        return MathItem(row["id"], row["reference"], row["response"], fmt, response_format)

    @property
    def pool(self) -> WorkerPool:
        """The worker pool, started on first use and kept warm until ``close()``."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = self._start_pool()
            return self._pool

    def _start_pool(self) -> WorkerPool:
        return WorkerPool(
            run_task,
            workers=self.config.workers,
            timeout_s=self.config.timeout_s,
            initializer=warm_up,
            chunk_size=self.config.chunk_size,
            memory_mb=self.config.memory_mb,
            preload=("math_verify", "verifiers.math.equivalence"),
        )

    def start(self) -> "MathVerifier":
        """Start the workers now (they warm up in the background while the caller reads input)."""
        _ = self.pool
        return self

    def verify_batch(self, items: Sequence[MathItem]) -> list[Verdict]:
        """Verdicts in the order of ``items``; a bad response is a verdict, never an exception."""
        for item in items:
            if item.reference_format not in REFERENCE_FORMATS:
                raise ValueError(f"item {item.id!r}: unknown reference_format {item.reference_format!r}")
            if item.response_format is not None and item.response_format not in RESPONSE_FORMATS:
                raise ValueError(f"item {item.id!r}: unknown response_format {item.response_format!r}")
        tasks = [
            CheckTask(
                item.reference,
                item.response,
                item.reference_format,
                self.config.extraction_policies,
                self.config.string_shortcut,
                item.response_format or self.config.response_format,
                self.config.rules,
            )
            for item in items
        ]
        results = self.pool.map(tasks) if tasks else []
        verdicts = []
        for item, result in zip(items, results):
            if result.ok:
                verdicts.append(result.value)
            elif result.status is TaskStatus.TIMEOUT:
                verdicts.append(Verdict.failed("timeout", f"no verdict within {self.config.timeout_s:g} s"))
            elif result.status is TaskStatus.CRASHED:
                logger.warning("math check of item %r crashed its worker: %s", item.id, result.message)
                verdicts.append(Verdict.errored("verifier_crashed", result.message))
            else:
                logger.warning("math check of item %r raised: %s", item.id, result.message)
                verdicts.append(Verdict.errored("verifier_exception", result.message))
        return verdicts

    def verify_one(
        self, reference: str, response: str, reference_format: str = "answer", response_format: str | None = None
    ) -> Verdict:
        """The verdict for a single (reference, response) pair."""
        return self.verify_batch([MathItem("one", reference, response, reference_format, response_format)])[0]

    def equivalent_batch(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """For each pair of extracted answers: are they the same answer? (timeouts count as no)."""
        results = self.pool.map([EquivalenceTask(a, b, self.config.rules) for a, b in pairs]) if pairs else []
        return [bool(r.value) if r.ok else False for r in results]

    def close(self) -> None:
        """Stop the workers; a later call starts a fresh pool."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def __enter__(self) -> "MathVerifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
