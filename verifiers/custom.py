"""A user's own scoring function as a verifier (``verifier.custom``, ``rest-em verify --custom``).

    with CustomVerifier.from_options(spec="my_pkg.rewards:judge", threshold=1.0, timeout_s=5.0) as v:
        item = v.parse_item({"id": "p1", "response": "... 42", "reference": "42", "problem": {...}})
        v.verify_batch([item])                     # [Verdict(pass, correct)]

``spec`` names the function as ``package.module:function`` (imported like any module) or
``path/to/file.py:function`` (loaded from that file). Two signatures are accepted:

- ``fn(response, reference, problem)``: the model's response text, the row's reference (a string for
  math, the test spec for code, or any JSON value) and the problem (a dict: ``id``, ``question``,
  ``level``, ``data_source`` and ``columns``, the source row as it was read);
- veRL's ``compute_score(data_source, solution_str, ground_truth, extra_info)``, recognised by its
  parameter names: ``solution_str`` = the response, ``ground_truth`` = the reference, ``data_source``
  and ``extra_info`` from the problem (``extra_info`` = the row's ``extra_info`` column, else {}).

What the function returns becomes the verdict:

==========================  ======================================================================
``True`` / ``False``        pass / fail (``wrong_answer``)
a number                    pass when ``>= threshold`` (default 1.0), else fail; NaN is an error
a dict                      ``score`` (bool or number, required) judged as above; ``reason`` (text,
                            kept as the verdict message; a known fail reason such as ``no_answer``
                            becomes the verdict reason); ``answer`` (the extracted answer: maj@k
                            votes on it)
``None``                    error (``custom_returned_none``): counted, never trained on, never a 0
an exception                error (``verifier_exception``), likewise
anything else               error (``custom_bad_return``)
==========================  ======================================================================

The function runs in the killable worker processes of ``verifiers.workers`` (as the math checks do):
past ``timeout_s`` its worker is killed and the verdict is fail ``timeout``, as for a math check; a
worker that dies on an item is an error (``verifier_crashed``). The function is imported once per
worker, and once in the parent when the verifier is built, so a bad spec fails before any sampling. A
function with a ``warm_up`` attribute (a callable) has it called once per worker before the worker takes
work: slow imports go there, not against the first item's deadline.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import inspect
import json
import logging
import math
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from verifiers.io import InputError
from verifiers.registry import check_option_names
from verifiers.verdict import FAIL_REASONS, Verdict
from verifiers.workers import TaskStatus, WorkerPool

logger = logging.getLogger(__name__)

VERL_PARAMS = ("data_source", "solution_str", "ground_truth")
_MESSAGE_CHARS = 500


class CustomSpecError(ValueError):
    """A ``module:function`` spec that cannot be loaded, with the reason."""


def load_function(spec: str) -> Callable[..., Any]:
    """The function named by ``package.module:function`` or ``path/to/file.py:function``."""
    if not isinstance(spec, str) or ":" not in spec:
        raise CustomSpecError(f"custom verifier {spec!r}: expected 'package.module:function' or 'path/to/file.py:function'")
    target, _, name = spec.rpartition(":")
    if not target or not name:
        raise CustomSpecError(f"custom verifier {spec!r}: expected 'package.module:function' or 'path/to/file.py:function'")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise CustomSpecError(f"custom verifier {spec!r}: no such file {path}")
        module_name = f"_rest_em_custom_{abs(hash(str(path)))}"
        module = sys.modules.get(module_name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(module_name, path)
            if loader_spec is None or loader_spec.loader is None:
                raise CustomSpecError(f"custom verifier {spec!r}: cannot load {path} as a Python module")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[module_name] = module
            try:
                loader_spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[module_name]
                raise CustomSpecError(f"custom verifier {spec!r}: importing {path} raised {type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(target)
        except Exception as exc:
            raise CustomSpecError(f"custom verifier {spec!r}: cannot import module {target!r} "
                                  f"({type(exc).__name__}: {exc})") from exc
    fn = getattr(module, name, None)
    if fn is None:
        public = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise CustomSpecError(f"custom verifier {spec!r}: {target} has no attribute {name!r}; its functions: "
                              f"{', '.join(public[:20]) or 'none'}")
    if not callable(fn):
        raise CustomSpecError(f"custom verifier {spec!r}: {name} is a {type(fn).__name__}, not a function")
    return fn


def calling_convention(fn: Callable[..., Any]) -> str:
    """``verl`` when ``fn`` takes veRL's compute_score parameters by name, else ``plain`` (3 positional)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return "plain"
    if all(p in params for p in VERL_PARAMS):
        return "verl"
    positional = [p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = any(p.kind is p.VAR_POSITIONAL for p in params.values())
    if not varargs and len(positional) < 3:
        raise CustomSpecError(f"custom verifier {getattr(fn, '__qualname__', fn)!r}: takes {len(positional)} positional "
                              f"parameters ({', '.join(params)}); expected fn(response, reference, problem) or veRL's "
                              "compute_score(data_source, solution_str, ground_truth, extra_info)")
    return "plain"


def call(fn: Callable[..., Any], convention: str, response: str, reference: Any, problem: dict[str, Any]) -> Any:
    if convention == "verl":
        kwargs: dict[str, Any] = {"data_source": problem.get("data_source") or "", "solution_str": response,
                                  "ground_truth": reference}
        params = inspect.signature(fn).parameters
        if "extra_info" in params:
            columns = problem.get("columns") or {}
            extra = columns.get("extra_info") if isinstance(columns, dict) else None
            kwargs["extra_info"] = extra if isinstance(extra, dict) else {}
        return fn(**kwargs)
    return fn(response, reference, problem)


def judge(value: Any, threshold: float) -> Verdict:
    """The verdict for what the user's function returned (see the module docstring)."""
    message = ""
    answer: str | None = None
    reason: str | None = None
    score = value
    if isinstance(value, dict):
        if value.get("reason") is not None:
            message = str(value["reason"])[:_MESSAGE_CHARS]
            if str(value["reason"]) in FAIL_REASONS:
                reason = str(value["reason"])
        if value.get("answer") is not None:
            answer = str(value["answer"])
        if "score" not in value:
            return Verdict.errored("custom_bad_return", f"the returned dict has no 'score' (keys: {', '.join(map(str, value))})",
                                   answer=answer)
        score = value["score"]
    if score is None:
        return Verdict.errored("custom_returned_none", message or "the custom verifier returned None", answer=answer)
    if isinstance(score, bool):
        passed = score
        shown = str(score)
    elif isinstance(score, (int, float)) or _is_number_like(score):
        number = float(score)
        if math.isnan(number):
            return Verdict.errored("custom_bad_return", "the custom verifier returned NaN", answer=answer)
        passed = number >= threshold
        shown = f"{number:g}"
    else:
        return Verdict.errored("custom_bad_return", f"expected bool, number, dict or None; got {type(score).__name__} "
                               f"{str(score)[:80]!r}", answer=answer)
    if passed:
        return Verdict.passed("correct", message or f"score {shown}", answer=answer)
    return Verdict.failed(reason or "wrong_answer", message or f"score {shown} < threshold {threshold:g}", answer=answer)


def _is_number_like(value: Any) -> bool:
    """numpy / torch scalars and the like: anything with ``__float__`` that is not a string."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


# ---------------------------------------------------------------- inside the worker processes

_LOADED: dict[str, tuple[Callable[..., Any], str]] = {}


def _loaded(spec: str) -> tuple[Callable[..., Any], str]:
    if spec not in _LOADED:
        fn = load_function(spec)
        _LOADED[spec] = (fn, calling_convention(fn))
    return _LOADED[spec]


def warm_up(spec: str) -> None:
    """Import the user's function once per worker, before it takes work, and call its ``warm_up`` attribute
    when it has one (slow imports belong there, not against the first item's deadline)."""
    fn, _ = _loaded(spec)
    hook = getattr(fn, "warm_up", None)
    if callable(hook):
        hook()


@dataclass(frozen=True)
class CustomTask:
    spec: str
    threshold: float
    response: str
    reference: Any
    problem: dict[str, Any]


def run_task(task: CustomTask) -> Verdict:
    """The function the worker pool runs; an exception from the user's function becomes the pool's
    ``exception`` result (an error verdict), never a fail."""
    fn, convention = _loaded(task.spec)
    return judge(call(fn, convention, task.response, task.reference, task.problem), task.threshold)


# ---------------------------------------------------------------- the verifier


@dataclass(frozen=True)
class CustomVerifyConfig:
    spec: str = ""  # "package.module:function" or "path/to/file.py:function"
    threshold: float = 1.0  # a score >= threshold passes
    timeout_s: float = 5.0  # per call; the worker is killed past it
    workers: int | None = None  # worker processes; None = one per CPU core
    chunk_size: int = 8
    memory_mb: int | None = 4096  # address-space cap per worker

    def __post_init__(self) -> None:
        if not self.spec:
            raise ValueError("the custom verifier needs spec='package.module:function' (verifier.custom, --custom)")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")


@dataclass(frozen=True)
class CustomItem:
    id: str | int
    response: str
    reference: Any
    problem: dict[str, Any]


class CustomVerifier:
    """The user's function behind the ``Verifier`` protocol, in a warm pool of killable workers."""

    domain = "custom"

    def __init__(self, config: CustomVerifyConfig) -> None:
        self.config = config
        fn = load_function(config.spec)  # a bad spec fails here, in the caller, before any sampling
        self.convention = calling_convention(fn)
        self._pool: WorkerPool | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_options(cls, **options: Any) -> "CustomVerifier":
        """Build from keyword overrides of ``CustomVerifyConfig``; ``None`` values are ignored."""
        check_option_names(options, {f.name for f in dataclasses.fields(CustomVerifyConfig)}, "custom verifier")
        return cls(CustomVerifyConfig(**{k: v for k, v in options.items() if v is not None}))

    def parse_item(self, row: dict[str, Any], where: str = "") -> CustomItem:
        prefix = f"{where}: " if where else ""
        if not isinstance(row, dict):
            raise InputError(f"{prefix}expected a JSON object, got {type(row).__name__}")
        for key in ("id", "response"):
            if key not in row:
                raise InputError(f"{prefix}missing key {key!r} (a custom row needs id, response and reference; problem "
                                 "is optional)")
        if isinstance(row["id"], bool) or not isinstance(row["id"], (str, int)):
            raise InputError(f"{prefix}'id' must be str or int, got {type(row['id']).__name__}")
        if not isinstance(row["response"], str):
            raise InputError(f"{prefix}'response' must be str, got {type(row['response']).__name__}")
        if "reference" not in row:
            raise InputError(f"{prefix}missing key 'reference' (any JSON value; null when the function needs none)")
        problem = row.get("problem")
        if problem is None:
            problem = {k: v for k, v in row.items() if k not in ("id", "response", "reference")}
        if not isinstance(problem, dict):
            raise InputError(f"{prefix}'problem' must be a JSON object, got {type(problem).__name__}")
        try:
            json.dumps(row["reference"])
            json.dumps(problem)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{prefix}reference and problem must be JSON data: {exc}") from None
        problem.setdefault("id", row["id"])
        return CustomItem(row["id"], row["response"], row["reference"], problem)

    @property
    def pool(self) -> WorkerPool:
        with self._lock:
            if self._pool is None:
                self._pool = WorkerPool(run_task, workers=self.config.workers, timeout_s=self.config.timeout_s,
                                        initializer=functools.partial(warm_up, self.config.spec),
                                        chunk_size=self.config.chunk_size, memory_mb=self.config.memory_mb)
            return self._pool

    def start(self) -> "CustomVerifier":
        _ = self.pool
        return self

    def verify_batch(self, items: Sequence[CustomItem]) -> list[Verdict]:
        tasks = [CustomTask(self.config.spec, self.config.threshold, it.response, it.reference, it.problem) for it in items]
        results = self.pool.map(tasks) if tasks else []
        verdicts = []
        for item, result in zip(items, results):
            if result.ok:
                verdicts.append(result.value)
            elif result.status is TaskStatus.TIMEOUT:
                verdicts.append(Verdict.failed("timeout", f"no verdict within {self.config.timeout_s:g} s"))
            elif result.status is TaskStatus.CRASHED:
                logger.warning("custom verifier %s crashed its worker on item %r: %s", self.config.spec, item.id, result.message)
                verdicts.append(Verdict.errored("verifier_crashed", result.message))
            else:
                logger.warning("custom verifier %s raised on item %r: %s", self.config.spec, item.id, result.message)
                verdicts.append(Verdict.errored("verifier_exception", result.message))
        return verdicts

    def health(self) -> dict[str, Any]:
        return {"spec": self.config.spec, "convention": self.convention, "threshold": self.config.threshold}

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def __enter__(self) -> "CustomVerifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
