"""What the trainer adapters share: verdicts for rows, from a service URL or in-process.

    scorer = Scorer(url="http://127.0.0.1:8000")      # POST /v1/verify through verifiers.client
    scorer = Scorer(verifier_options={"math": {"workers": 2}})  # the registry's verifiers, in this process
    verdicts = scorer.verdicts([{"id": 0, "domain": "math", "reference": "4", "response": "\\boxed{4}"}])

Either way a row that cannot be verified (a bad label, a test object the code verifier refuses) is an
``error`` verdict naming the problem, like the service client's ``invalid_item``: never a pass or fail.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections import deque
from typing import Any, Sequence

from verifiers.io import InputError
from verifiers.labels import LabelError, item_from_label
from verifiers.verdict import Outcome, Verdict

logger = logging.getLogger(__name__)

# Item fields a dataset may carry as its own columns instead of one ``label`` column.
ITEM_COLUMNS = ("reference", "reference_format", "response_format", "tests")


class Scorer:
    """Verdicts for ``/v1/verify``-style rows (with ``domain``), in order."""

    def __init__(self, url: str | None = None, token: str | None = None,
                 verifier_options: dict[str, dict[str, Any]] | None = None, **client_options: Any) -> None:
        self.url = url
        self.token = token
        self.verifier_options = verifier_options or {}
        self.client_options = client_options
        self._client: Any = None
        self._verifiers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def verdicts(self, rows: Sequence[dict[str, Any]]) -> list[Verdict]:
        if not rows:
            return []
        if self.url:
            return [r.to_verdict() for r in self._remote().verify(list(rows))]
        return self._local(rows)

    def _remote(self) -> Any:
        with self._lock:
            if self._client is None:
                from verifiers.client import VerifierClient

                self._client = VerifierClient(self.url, token=self.token, **self.client_options)
            return self._client

    def _verifier(self, domain: str) -> Any:
        with self._lock:
            verifier = self._verifiers.get(domain)
            if verifier is None:
                from verifiers.registry import get_verifier

                verifier = get_verifier(domain, **self.verifier_options.get(domain, {}))
                self._verifiers[domain] = verifier
                atexit.register(verifier.close)
            return verifier

    def _local(self, rows: Sequence[dict[str, Any]]) -> list[Verdict]:
        out: list[Verdict | None] = [None] * len(rows)
        by_domain: dict[str, list[tuple[int, Any]]] = {}
        for i, row in enumerate(rows):
            domain = row.get("domain")
            try:
                verifier = self._verifier(domain)
            except ValueError as exc:  # an unknown domain
                out[i] = Verdict.errored("invalid_item", str(exc))
                continue
            item = {k: v for k, v in row.items() if k != "domain"}
            try:
                by_domain.setdefault(domain, []).append((i, verifier.parse_item(item, where=f"item {row.get('id')}")))
            except InputError as exc:
                out[i] = Verdict.errored("invalid_item", str(exc))
        for domain, pairs in by_domain.items():
            verdicts = self._verifier(domain).verify_batch([p for _, p in pairs])
            for (i, _), verdict in zip(pairs, verdicts, strict=True):
                out[i] = verdict
        return [v if v is not None else Verdict.errored("verifier_bug", "no verdict") for v in out]

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            for verifier in self._verifiers.values():
                verifier.close()
            self._verifiers.clear()


def row_for(index: int, response: str, label: Any, columns: dict[str, Any], default_domain: str) -> dict[str, Any] | Verdict:
    """The row of one completion: from its ``label`` when there is one, else from the item columns
    (``reference`` / ``tests`` / ...). A label that breaks the convention is an ``error`` verdict."""
    try:
        if label is not None:
            return item_from_label(label, response, item_id=index, default_domain=default_domain)
        fields = {k: v for k, v in columns.items() if v is not None}
        return item_from_label(fields, response, item_id=index, default_domain=default_domain)
    except LabelError as exc:
        return Verdict.errored("invalid_label", str(exc))


def verdicts_for(scorer: Scorer, prepared: Sequence[dict[str, Any] | Verdict]) -> list[Verdict]:
    """Verdicts for rows, keeping the ``error`` verdicts of rows that could not be built."""
    rows = [(i, p) for i, p in enumerate(prepared) if isinstance(p, dict)]
    got = scorer.verdicts([p for _, p in rows])
    out: list[Verdict] = [p if isinstance(p, Verdict) else Verdict.errored("verifier_bug", "") for p in prepared]
    for (i, _), verdict in zip(rows, got, strict=True):
        out[i] = verdict
    return out


class ErrorBudget:
    """The share of ``error`` verdicts over the last ``window`` items; a call with errors of its own raises when
    that share is over ``max_error_rate``.

    With ``max_error_rate == 0`` the first error raises. Otherwise the rate is judged once at least
    ``min_items`` verdicts are in the window, so one early error is not a 100 % rate."""

    def __init__(self, max_error_rate: float, window: int = 256, min_items: int = 20) -> None:
        if not 0.0 <= max_error_rate <= 1.0:
            raise ValueError(f"max_error_rate must be within [0, 1], got {max_error_rate!r}")
        self.max_error_rate = max_error_rate
        self.min_items = min_items
        self.recent: deque[bool] = deque(maxlen=window)
        self._lock = threading.Lock()

    def check(self, verdicts: Sequence[Verdict], where: str) -> None:
        with self._lock:
            self.recent.extend(v.outcome is Outcome.ERROR for v in verdicts)
            errors, seen = sum(self.recent), len(self.recent)
        batch_errors = sum(v.outcome is Outcome.ERROR for v in verdicts)
        if not batch_errors:  # only a call that has errors of its own is refused
            return
        judged = self.max_error_rate == 0.0 or seen >= self.min_items or len(verdicts) >= self.min_items
        rate = errors / seen
        if judged and rate > self.max_error_rate:
            first = next((v for v in verdicts if v.outcome is Outcome.ERROR), None)
            detail = f"; e.g. {first.reason}: {first.message[:300]}" if first else ""
            raise VerifierErrorRate(
                f"{where}: {errors} of the last {seen} verdicts are `error` (our side broke, not the model; "
                f"{batch_errors} in this call), over max_error_rate={self.max_error_rate}{detail}")


class VerifierErrorRate(RuntimeError):
    """Too many ``error`` verdicts to go on training on the rest."""
