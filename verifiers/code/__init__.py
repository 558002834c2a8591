"""Code verification: run a candidate program against its tests in the Docker sandbox.

    with CodeVerifier.from_options(timeout_per_test_s=4) as v:
        items = [v.parse_item(row, where=f"{path}:{n}") for n, row in read_jsonl(path)]
        verdicts = v.verify_batch(items)         # same order; run concurrently across the pool
        v.health()                               # {"alive": 2, "jobs_run": ..., "replaced": ...}

An item is ``{"id", "response", "tests"}`` (see ``CodeItem`` for the four test styles). Verdicts:
``pass`` only when every test passes; ``fail`` with reason ``wrong_answer`` (the message names the test
index), ``runtime_error``, ``timeout``, ``memory_limit``, ``output_limit``, ``syntax_error`` or ``no_code``;
``error`` with ``sandbox_unavailable`` (no Docker engine, no image) or ``sandbox_error`` (the sandbox
broke). Docker is optional at import time: without it every verdict is ``error``/``sandbox_unavailable``.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any, Sequence

from verifiers.code.extract import POLICIES, extract_code
from verifiers.code.harness import COMPARE_MODES, STYLES, CodeItem, build_job, verdict_for
from verifiers.io import InputError
from verifiers.registry import check_option_names
from verifiers.verdict import Verdict

__all__ = ["CodeVerifier", "CodeVerifyConfig", "CodeItem", "extract_code"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CodeVerifyConfig:
    """Limits and pool settings of the code verifier."""

    timeout_per_test_s: float = 4.0      # wall time of one test (APPS uses 4 s)
    timeout_per_problem_s: float = 30.0  # wall time of all tests of one item
    memory_mb: int = 512                 # per container (memory = memory+swap) and per process (address space)
    output_bytes: int = 1 << 20          # stdout per test; more fails with output_limit
    pool_size: int = 0                   # containers; 0 = one per CPU core
    recycle_after: int = 1000            # jobs before a container is replaced anyway
    extraction: str = "auto"             # see verifiers.code.extract.POLICIES
    cpus_per_container: float = 1.0
    pids_limit: int = 64
    image: str = ""                      # "" = build/reuse the content-hashed sandbox image
    image_method: str = "offline"        # or "dockerfile" on machines that can pull base images
    # stdio output comparison when an item's tests do not say: "tokens" (integers exact, float-looking
    # tokens within a tolerance) or "apps" (the APPS harness: every number within a tolerance).
    compare: str = "tokens"

    def __post_init__(self) -> None:
        for name in ("timeout_per_test_s", "timeout_per_problem_s", "memory_mb", "output_bytes", "recycle_after",
                     "cpus_per_container", "pids_limit"):
            if getattr(self, name) <= 0:
                raise ValueError(f"CodeVerifyConfig.{name} must be positive, got {getattr(self, name)!r}")
        if self.pool_size < 0:
            raise ValueError(f"CodeVerifyConfig.pool_size must be >= 0, got {self.pool_size!r}")
        if self.compare not in COMPARE_MODES:
            raise ValueError(f"CodeVerifyConfig.compare: unknown mode {self.compare!r}; "
                             f"choose one of {', '.join(COMPARE_MODES)}")
        if self.extraction not in POLICIES:
            raise ValueError(f"CodeVerifyConfig.extraction: unknown policy {self.extraction!r}; "
                             f"choose one of {', '.join(sorted(POLICIES))}")

    @classmethod
    def from_options(cls, **options: Any) -> "CodeVerifyConfig":
        known = {f.name: f for f in fields(cls)}
        check_option_names(options, known, "code verifier")
        for key, value in options.items():
            want = known[key].type
            ok = {"float": (int, float), "int": (int,), "str": (str,)}.get(str(want), (object,))
            if isinstance(value, bool) or not isinstance(value, ok):
                raise ValueError(f"code verifier option {key!r} must be {want}, got {type(value).__name__} {value!r}")
        return cls(**options)


def _check(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise InputError(f"{where}: {what}" if where else what)


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


class CodeVerifier:
    """The ``code`` domain of ``verifiers.registry``; a context manager that owns a sandbox pool."""

    domain = "code"

    def __init__(self, config: CodeVerifyConfig | None = None) -> None:
        self.config = config or CodeVerifyConfig()
        self._pool: Any = None
        self._pool_error: str | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_options(cls, **options: Any) -> "CodeVerifier":
        """Build from keyword options. Besides the ``CodeVerifyConfig`` fields it takes the two options
        every domain of ``verifiers.registry`` understands, so callers can stay domain-agnostic:
        ``timeout_s`` (the per-test limit) and ``workers`` (containers in the pool; None = one per core).
        None values are ignored."""
        options = {k: v for k, v in options.items() if v is not None}
        if "timeout_s" in options:
            options.setdefault("timeout_per_test_s", options.pop("timeout_s"))
        if "workers" in options:
            options.setdefault("pool_size", options.pop("workers"))
        return cls(CodeVerifyConfig.from_options(**options))

    # ------------------------------------------------------------------------------------ input

    def parse_item(self, row: dict[str, Any], where: str = "") -> CodeItem:
        """Validate one row; ``InputError`` names ``where`` and what is wrong."""
        _check(isinstance(row, dict), where, f"expected an object, got {type(row).__name__}")
        ident = row.get("id", row.get("problem_id"))
        _check(isinstance(ident, (str, int)) and not isinstance(ident, bool), where, "missing 'id' (a string or integer)")
        _check(isinstance(row.get("response"), str), where, "missing 'response' (a string)")
        tests = row.get("tests")
        _check(isinstance(tests, dict), where, "missing 'tests' (an object with a 'style')")
        style = tests.get("style")
        _check(style in STYLES, where, f"tests.style must be one of {', '.join(STYLES)}, got {style!r}")
        if "compare" in tests:
            _check(style in ("stdio", "call"), where,
                   f"tests.compare applies to stdio (and APPS call) tests, not {style!r} tests")
            _check(tests["compare"] in COMPARE_MODES, where,
                   f"tests.compare must be one of {', '.join(COMPARE_MODES)}, got {tests['compare']!r}")
        if style == "stdio":
            _check(_str_list(tests.get("inputs")) and _str_list(tests.get("outputs")), where,
                   "stdio tests need 'inputs' and 'outputs', lists of strings")
            _check(len(tests["inputs"]) == len(tests["outputs"]) > 0, where,
                   f"stdio tests need as many outputs as inputs (>0), got {len(tests['inputs'])} and {len(tests['outputs'])}")
        elif style == "call":
            _check(isinstance(tests.get("fn_name"), str) and tests["fn_name"].isidentifier(), where,
                   "call tests need 'fn_name', an identifier")
            inputs, outputs = tests.get("inputs"), tests.get("outputs")
            _check(isinstance(inputs, list) and all(isinstance(a, list) for a in inputs), where,
                   "call tests need 'inputs', a list of argument lists")
            _check(isinstance(outputs, list) and len(outputs) == len(inputs) > 0, where,
                   "call tests need 'outputs', one per input (>0)")
        elif style == "humaneval":
            for key in ("prompt", "test", "entry_point"):
                _check(isinstance(tests.get(key), str) and tests[key], where, f"humaneval tests need {key!r}, a string")
            _check(tests["entry_point"].isidentifier(), where, "entry_point must be an identifier")
            _check("def check" in tests["test"], where, "humaneval 'test' must define check(candidate)")
        elif style == "assert":
            _check(_str_list(tests.get("test_list")) and tests["test_list"], where,
                   "assert tests need 'test_list', a non-empty list of strings")
            _check(isinstance(tests.get("setup", ""), str), where, "assert 'setup' must be a string")
            for i, line in enumerate(tests["test_list"]):
                try:
                    compile(line, f"<test {i}>", "exec")  # trusted test text, never the candidate's code
                except SyntaxError as exc:
                    raise InputError(f"{where}: test_list[{i}] is not valid Python: {exc.msg}") from None
        return CodeItem(id=str(ident), response=row["response"], tests=tests)

    # ------------------------------------------------------------------------------------- pool

    def _get_pool(self) -> Any:
        with self._lock:
            if self._pool is not None:
                return self._pool
            from sandbox.limits import SandboxLimits
            from sandbox.pool import PoolConfig, SandboxPool, SandboxUnavailable

            c = self.config
            try:
                limits = SandboxLimits(memory_mb=c.memory_mb, cpus=c.cpus_per_container, pids=c.pids_limit,
                                       output_bytes=c.output_bytes)
                self._pool = SandboxPool(PoolConfig(size=c.pool_size, limits=limits, recycle_after=c.recycle_after,
                                                    image=c.image or None, image_method=c.image_method))
                self._pool_error = None
            except SandboxUnavailable as exc:
                self._pool_error = str(exc)
                log.error("code sandbox unavailable: %s", exc)
                return None
            return self._pool

    def _limits(self) -> dict[str, Any]:
        from sandbox.limits import SandboxLimits, process_limits

        c = self.config
        return process_limits(SandboxLimits(memory_mb=c.memory_mb, output_bytes=c.output_bytes),
                              c.timeout_per_test_s, c.timeout_per_problem_s)

    # ----------------------------------------------------------------------------------- verify

    def verify_one(self, item: CodeItem, pool: Any = None) -> Verdict:
        code = extract_code(item.response, self.config.extraction)
        if not code.strip():
            return Verdict.failed("no_code", "the response contains no program")
        pool = pool or self._get_pool()
        if pool is None:
            return Verdict.errored("sandbox_unavailable", self._pool_error or "no sandbox")
        from sandbox.pool import SandboxError, SandboxUnavailable

        job = build_job(item, code, self._limits())
        try:
            reply = pool.run(job, timeout_s=self.config.timeout_per_problem_s)
        except SandboxUnavailable as exc:
            return Verdict.errored("sandbox_unavailable", str(exc)[:500])
        except SandboxError as exc:
            if exc.oom:
                return Verdict.failed("memory_limit", "the container hit its memory limit")
            if exc.timeout:
                # The runner enforces every deadline itself; missing the host's one means the program
                # starved the whole container (the container was killed and replaced).
                return Verdict.failed("timeout", "time limit exceeded (container killed by the host)")
            return Verdict.errored("sandbox_error", str(exc)[:500])
        try:
            return verdict_for(item, reply, self.config.compare)
        except Exception as exc:  # a verifier bug must be an error, never a pass or a fail
            log.exception("interpreting the sandbox reply for %s", item.id)
            return Verdict.errored("sandbox_error", f"could not interpret the sandbox reply: {exc}")

    def run_program(self, source: str, stdin: str = "", timeout_s: float | None = None,
                    memory_mb: int | None = None) -> dict[str, Any]:
        """Run one Python program once, as the service's ``/run_code`` does, in the same pool and under the
        same limits as a verified candidate (``timeout_s`` and ``memory_mb`` may only lower them).

        Returns ``{"status", "stdout", "stderr", "exit", "signal", "elapsed_s", "message"}`` where
        ``status`` is the runner's ``ok`` / ``runtime_error`` / ``timeout`` / ``memory`` / ``output_limit``,
        or ``sandbox_error`` / ``sandbox_unavailable`` when our side broke (``message`` says how)."""
        c = self.config
        test_s = min(timeout_s, c.timeout_per_problem_s) if timeout_s and timeout_s > 0 else c.timeout_per_test_s
        memory = min(memory_mb, c.memory_mb) if memory_mb and memory_mb > 0 else c.memory_mb
        empty = {"stdout": "", "stderr": "", "exit": None, "signal": None, "elapsed_s": 0.0, "message": ""}
        pool = self._get_pool()
        if pool is None:
            return {**empty, "status": "sandbox_unavailable", "message": self._pool_error or "no sandbox"}
        from sandbox.limits import SandboxLimits, process_limits
        from sandbox.pool import SandboxError, SandboxUnavailable

        limits = process_limits(SandboxLimits(memory_mb=memory, output_bytes=c.output_bytes), test_s, test_s)
        job = {"kind": "exec", "source": source, "inputs": [stdin], "limits": limits}
        started = time.monotonic()
        try:
            reply = pool.run(job, timeout_s=test_s)
        except SandboxUnavailable as exc:
            return {**empty, "status": "sandbox_unavailable", "message": str(exc)[:500]}
        except SandboxError as exc:
            elapsed = round(time.monotonic() - started, 4)
            if exc.oom:
                return {**empty, "status": "memory", "signal": 9, "elapsed_s": elapsed,
                        "message": "the container hit its memory limit"}
            if exc.timeout:
                return {**empty, "status": "timeout", "elapsed_s": elapsed,
                        "message": "time limit exceeded (container killed by the host)"}
            return {**empty, "status": "sandbox_error", "elapsed_s": elapsed, "message": str(exc)[:500]}
        tests = reply.get("tests") or []
        if len(tests) != 1 or reply.get("stop") == "harness_crash":
            return {**empty, "status": "sandbox_error",
                    "message": f"unexpected runner reply: {str(reply.get('crash') or reply)[:300]}"}
        res = tests[0]
        return {"status": res["status"], "stdout": res.get("stdout", ""), "stderr": res.get("stderr", ""),
                "exit": res.get("exit"), "signal": res.get("signal"), "elapsed_s": res.get("elapsed_s", 0.0),
                "message": ""}

    def verify_batch(self, items: Sequence[CodeItem]) -> list[Verdict]:
        """Verdicts in the order of ``items``; never raises for a bad candidate or a missing sandbox."""
        if not items:
            return []
        pool = self._get_pool()
        if pool is None:
            return [Verdict.errored("sandbox_unavailable", self._pool_error or "no sandbox") for _ in items]
        workers = max(1, min(len(items), pool.config.resolved_size))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="code-verify") as ex:
            return list(ex.map(lambda it: self.verify_one(it, pool), items))

    # ---------------------------------------------------------------------------------- behaviour

    def behaviour_one(self, item: CodeItem, pool: Any = None) -> tuple[tuple[str, ...] | None, str]:
        """What the candidate's program does on its tests' inputs, the expected outputs never looked at:
        ``(outputs, "ok")`` with one entry per input (stdio: the stdout's whitespace-separated tokens joined
        by one space; call: the return value as canonical JSON of ``sandbox.wire``'s plain data), or
        ``(None, why)`` when it has no code, crashes, times out or hits a limit on any input, returns
        something that is not plain data, the sandbox is unavailable, or the test style has no inputs of
        its own (``humaneval``, ``assert``: their inputs live inside the test code). Behaviour-based
        maj@k (AlphaCode, CodeT) votes on these."""
        import json

        if item.style not in ("stdio", "call"):
            return None, f"no_inputs ({item.style} tests)"
        code = extract_code(item.response, self.config.extraction)
        if not code.strip():
            return None, "no_code"
        pool = pool or self._get_pool()
        if pool is None:
            return None, "sandbox_unavailable"
        from sandbox.pool import SandboxError, SandboxUnavailable

        try:
            reply = pool.run(build_job(item, code, self._limits()), timeout_s=self.config.timeout_per_problem_s)
        except (SandboxError, SandboxUnavailable) as exc:
            return None, f"sandbox: {str(exc)[:200]}"
        n = len(item.tests["inputs"])
        tests = reply.get("tests", [])
        if item.style == "stdio":
            if len(tests) != n or any(t["status"] != "ok" for t in tests):
                bad = next((t["status"] for t in tests if t["status"] != "ok"), "incomplete")
                return None, bad
            return tuple(" ".join(t.get("stdout", "").split()) for t in tests), "ok"
        if (reply.get("load") or {}).get("status") not in (None, "ok"):
            return None, str(reply["load"]["status"])
        if reply.get("stop") != "done" or len(tests) != n or any(t["status"] != "ok" for t in tests):
            return None, next((t["status"] for t in tests if t["status"] != "ok"), str(reply.get("stop")))
        if any(t.get("unencodable") for t in tests):
            return None, "not_plain_data"
        return tuple(json.dumps(t["value"], sort_keys=True) for t in tests), "ok"

    def behaviour_batch(self, items: Sequence[CodeItem]) -> list[tuple[tuple[str, ...] | None, str]]:
        """``behaviour_one`` of every item, in order, concurrently across the pool."""
        if not items:
            return []
        pool = self._get_pool()
        if pool is None:
            return [(None, "sandbox_unavailable") for _ in items]
        workers = max(1, min(len(items), pool.config.resolved_size))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="code-behaviour") as ex:
            return list(ex.map(lambda it: self.behaviour_one(it, pool), items))

    def health(self) -> dict[str, Any]:
        """Pool state: containers alive, jobs run, containers replaced (or why there is no pool)."""
        if self._pool is None:
            return {"available": self._pool_error is None, "started": False, "alive": 0, "jobs_run": 0,
                    "replaced": 0, "reason": self._pool_error or "not started yet"}
        return {"available": True, **self._pool.health()}

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def __enter__(self) -> "CodeVerifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
