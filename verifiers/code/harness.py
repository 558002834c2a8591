"""Turns a code item into a sandbox job and the runner's reply into a ``Verdict``.

Four test styles (``CodeItem.tests``):

* ``stdio``     APPS standard input: the program runs once per input; its stdout is compared *here*,
                on the host, token by token (whitespace and line breaks do not matter). By default
                (``compare: tokens``) integers must be equal exactly and only a token that looks like
                a float is compared within a tolerance; ``compare: apps`` is the APPS harness's rule
                (every number within a tolerance). Expected outputs never enter the container.
* ``call``      APPS call-based: ``fn_name`` (a function, or a method of ``class Solution``) is called
                once per input inside the candidate's process; the return values come back as plain
                data (``sandbox.wire``) and are compared here.
* ``humaneval`` ``check(entry_point)`` from the problem's test code, run by the trusted judge process
                in the container, which reaches the candidate only through calls that return plain data.
* ``assert``    MBPP: each assert line, likewise run by the judge.

The pass signal cannot be forged from the candidate's process: a reply is accepted only with the job's
random marker, which only the runner (PID 1, non-dumpable) holds; exiting early, patching builtins or
``check`` (they live in another process), printing text, or returning an object with a rigged
``__eq__`` (it arrives as an opaque handle equal to nothing) all end in ``fail``.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sandbox import wire
from verifiers.verdict import Verdict

STYLES = ("stdio", "call", "humaneval", "assert")
# How stdio output is compared with the expected output; see ``stdio_match``.
COMPARE_MODES = ("tokens", "apps")


@dataclass(frozen=True)
class CodeItem:
    """One candidate program and the tests it must pass.

    ``tests`` is one of:
      {"style": "stdio", "inputs": [str, ...], "outputs": [str, ...], "compare": "tokens" | "apps" (optional)}
      {"style": "call", "fn_name": str, "inputs": [[arg, ...], ...], "outputs": [value, ...]}
      {"style": "humaneval", "prompt": str, "test": str, "entry_point": str}
      {"style": "assert", "test_list": [str, ...], "setup": str}
    """

    id: str
    response: str
    tests: dict[str, Any]

    @property
    def style(self) -> str:
        return self.tests["style"]


# ------------------------------------------------------------------------------------------ programs

# APPS' call-based starter code annotates with ``List[int]`` and its harness prepends imports; we
# prepend the same names, except numpy, whose import would cost ~0.1 s per job (a solution that uses
# numpy imports it itself).
CALL_HEADER = (
    "from typing import *\n"
    "import sys, math, heapq, bisect, itertools, collections, functools\n"
    "from collections import Counter, OrderedDict, deque, defaultdict\n"
    "from functools import lru_cache, reduce\n"
    "from itertools import accumulate, product, permutations, combinations\n"
    "from math import sqrt, ceil, floor, gcd, log, log2, inf\n"
    "from heapq import heappush, heappop, heapify\n"
)


def program_for(item: CodeItem, code: str) -> str:
    """The source the candidate process runs: for HumanEval the prompt continued by the response,
    for APPS call-based tests the imports its starter code assumes, then the response."""
    if item.style == "humaneval":
        prompt = item.tests["prompt"]
        return prompt + ("" if prompt.endswith("\n") else "\n") + code
    if item.style == "call":
        return CALL_HEADER + code
    return code


def _names_used(test_list: list[str]) -> list[str]:
    names: list[str] = []
    for line in test_list:
        for node in ast.walk(ast.parse(line)):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in names:
                names.append(node.id)
    return names


def build_job(item: CodeItem, code: str, limits: dict[str, Any]) -> dict[str, Any]:
    """The runner job for ``item`` (never containing expected outputs of stdio/call tests)."""
    t = item.tests
    source = program_for(item, code)
    if item.style == "stdio":
        return {"kind": "exec", "source": source, "inputs": list(t["inputs"]), "limits": limits}
    if item.style == "call":
        tests = [{"call": t["fn_name"], "args": wire.to_json(wire.encode(list(args)))} for args in t["inputs"]]
        return {"kind": "judge", "source": source, "prelude": "", "proxies": [], "tests": tests, "limits": limits}
    if item.style == "humaneval":
        entry = t["entry_point"]
        return {
            "kind": "judge", "source": source,
            # The prompt's helpers (poly, encode_cyclic, ...) are trusted problem text the tests use.
            "prelude": t["prompt"] + "\n" + t["test"],
            "proxies": [entry], "force_proxies": [entry], "override_prelude": True,
            "tests": [{"code": f"check({entry})"}], "limits": limits,
        }
    if item.style == "assert":
        return {
            "kind": "judge", "source": source, "prelude": t.get("setup", ""),
            "proxies": _names_used(t["test_list"]), "override_prelude": False,
            "tests": [{"code": line} for line in t["test_list"]], "limits": limits,
        }
    raise ValueError(f"unknown test style {item.style!r}")


# ---------------------------------------------------------------------------------------- comparing

def _is_number(tok: str) -> float | None:
    if "_" in tok:  # float("1_0") == 10.0, but "1_0" is not the number 10 in a judge's output
        return None
    try:
        return float(tok)
    except ValueError:
        return None


# A token that looks like a float: a decimal point or an exponent ("0.5", "3.", ".5", "1e-9", "2E+3").
_FLOAT_TOKEN = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")
_INT_TOKEN = re.compile(r"[+-]?\d+")


def _looks_like_float(tok: str) -> bool:
    return _FLOAT_TOKEN.fullmatch(tok) is not None and _INT_TOKEN.fullmatch(tok) is None


def _token_match(got: str, expected: str, rtol: float, atol: float) -> bool:
    """``compare: tokens``: equal strings; or equal exact values when the expected token is an integer
    (``1.0`` and ``1e3`` are the integers 1 and 1000, ``1000000007`` is not ``1000000000``); or within
    the tolerance when the expected token looks like a float and the output token is a number."""
    if got == expected:
        return True
    if _INT_TOKEN.fullmatch(expected):
        if _FLOAT_TOKEN.fullmatch(got) is None:
            return False
        try:
            return Decimal(got) == Decimal(expected)  # exact, however many digits
        except InvalidOperation:
            return False
    if _looks_like_float(expected) and _FLOAT_TOKEN.fullmatch(got) is not None:
        fg, fe = float(got), float(expected)
        if not (math.isfinite(fg) and math.isfinite(fe)):
            return False
        return abs(fg - fe) <= atol + rtol * abs(fe)
    return False


def _apps_token_match(a: str, b: str, rtol: float, atol: float) -> bool:
    """``compare: apps``: any two tokens Python reads as finite floats match within the tolerance."""
    if a == b:
        return True
    fa, fb = _is_number(a), _is_number(b)
    if fa is None or fb is None or not math.isfinite(fa) or not math.isfinite(fb):
        return False
    return abs(fa - fb) <= atol + rtol * abs(fb)


def stdio_match(got: str, expected: str, rtol: float = 1e-5, atol: float = 1e-8, compare: str = "tokens") -> bool:
    """Compare whitespace-separated tokens of a program's output with the expected output.

    ``compare="tokens"`` (default): integers compare exactly; a token is compared as a float within
    ``atol + rtol * |expected|`` only when the expected token looks like a float (a decimal point or
    an exponent). ``compare="apps"``: the APPS harness's rule, every pair of numeric tokens within
    that tolerance (so ``1000000000`` matches ``1000000007``).
    """
    if compare not in COMPARE_MODES:
        raise ValueError(f"unknown compare mode {compare!r}; choose from {', '.join(COMPARE_MODES)}")
    g, e = got.split(), expected.split()
    if g == e:
        return True
    if len(g) != len(e):
        return False
    match = _token_match if compare == "tokens" else _apps_token_match
    return all(match(a, b, rtol, atol) for a, b in zip(g, e))


def _as_lists(value: Any) -> Any:
    """APPS' expected values come from JSON: tuples are lists there."""
    if isinstance(value, (list, tuple)):
        return [_as_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_lists(v) for k, v in value.items()}
    return value


def _close(a: Any, b: Any) -> bool:
    """Python equality on decoded plain data, with a float tolerance; never calls candidate code."""
    ta, tb = type(a), type(b)
    if float in (ta, tb) and ta in (int, float) and tb in (int, float):
        if math.isfinite(a) and math.isfinite(b):
            return abs(a - b) <= 1e-8 + 1e-5 * abs(b)
        return a == b
    if ta is list and tb is list:
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if ta is dict and tb is dict:
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return a == b


def call_match(got: Any, expected: Any) -> bool:
    """APPS call-based rules on plain data: tuples count as lists, and a one-element expected list
    also accepts its element (APPS wraps many single return values in a list)."""
    got = _as_lists(got)
    if _close(got, expected):
        return True
    return isinstance(expected, list) and len(expected) > 0 and _close(got, expected[0])


# ----------------------------------------------------------------------------------------- verdicts

def _fail_from_status(status: str, i: int | None, detail: str = "") -> Verdict:
    where = f" on test {i}" if i is not None else ""
    if status == "timeout":
        return Verdict.failed("timeout", f"time limit exceeded{where}")
    if status == "output_limit":
        return Verdict.failed("output_limit", f"output limit exceeded{where}")
    if status == "memory":
        return Verdict.failed("memory_limit", f"memory limit exceeded{where}")
    return Verdict.failed("runtime_error", f"runtime error{where}: {detail}"[-500:])


def _syntax(stderr: str) -> bool:
    last = stderr.strip().splitlines()[-1:] or [""]
    return last[0].startswith(("SyntaxError", "IndentationError", "TabError"))


def verdict_for_exec(item: CodeItem, reply: dict[str, Any], compare: str = "tokens") -> Verdict:
    """``compare`` is the verifier's default; the item's ``tests["compare"]`` overrides it."""
    outputs = item.tests["outputs"]
    compare = item.tests.get("compare") or compare
    tests = reply.get("tests", [])
    for res in tests:
        i = res["i"]
        if res["status"] != "ok":
            if res["status"] == "runtime_error" and i == 0 and _syntax(res.get("stderr", "")):
                return Verdict.failed("syntax_error", res["stderr"].strip().splitlines()[-1][:300])
            return _fail_from_status(res["status"], i, res.get("stderr", "").strip()[-300:])
        if not stdio_match(res.get("stdout", ""), outputs[i], compare=compare):
            return Verdict.failed("wrong_answer", f"wrong answer on test {i}")
    if len(tests) != len(outputs):
        return Verdict.errored("sandbox_error", f"the runner reported {len(tests)} of {len(outputs)} tests")
    return Verdict.passed()


def verdict_for_judge(item: CodeItem, reply: dict[str, Any]) -> Verdict:
    if reply.get("stop") == "harness_crash":
        return Verdict.errored("sandbox_error", f"the judge crashed: {reply.get('crash', '')[-300:]}")
    cand = reply.get("candidate") or {}
    load = reply.get("load") or {}
    status = load.get("status")
    if status == "harness_error":
        return Verdict.errored("unsupported_test", f"the problem's test set-up failed: {load.get('msg', '')[:300]}")
    if status == "syntax_error":
        return Verdict.failed("syntax_error", load.get("msg", "")[:300])
    if status in ("runtime_error", "exited"):
        if load.get("error") == "MemoryError" or (status == "exited" and cand.get("memory")):
            return Verdict.failed("memory_limit", "memory limit exceeded while loading the program")
        if load.get("error") == "SystemExit" or status == "exited":
            return Verdict.failed("runtime_error", "the program exited before the tests ran")
        return Verdict.failed("runtime_error", f"the program raised while loading: {load.get('msg', '')[-300:]}")
    stop = reply.get("stop")
    tests = reply.get("tests", [])
    expected_n = len(item.tests["inputs"]) if item.style == "call" else (
        1 if item.style == "humaneval" else len(item.tests["test_list"]))
    for res in tests:
        i = res["i"]
        st = res["status"]
        if st == "ok":
            if item.style == "call":
                if res.get("unencodable"):
                    return Verdict.failed("wrong_answer", f"wrong answer on test {i}: not plain data")
                if not call_match(wire.decode(wire.from_json(res["value"])), item.tests["outputs"][i]):
                    return Verdict.failed("wrong_answer", f"wrong answer on test {i}")
            continue
        if st == "wrong_answer":
            return Verdict.failed("wrong_answer", f"wrong answer on test {i}: {res.get('msg', '')}"[:300])
        if st == "runtime_error":
            if res.get("error") == "MemoryError":
                return _fail_from_status("memory", i)
            return _fail_from_status("runtime_error", i, res.get("msg", "")[-300:])
        if st == "exited":
            return _fail_from_status("memory" if cand.get("memory") else "runtime_error", i,
                                     "the program exited or was killed during the test")
        return _fail_from_status(st, i)
    if stop in ("timeout", "output_limit"):
        return _fail_from_status(stop, None)
    if stop == "judge_killed":
        if cand.get("memory"):
            return _fail_from_status("memory", None)
        return Verdict.failed("runtime_error", "the program killed the test process")
    if stop != "done" or len(tests) != expected_n:
        if cand.get("memory"):
            return _fail_from_status("memory", None)
        return Verdict.errored("sandbox_error", f"incomplete judge report (stop={stop}, {len(tests)}/{expected_n} tests)")
    return Verdict.passed()


def verdict_for(item: CodeItem, reply: dict[str, Any], compare: str = "tokens") -> Verdict:
    if item.style == "stdio":
        return verdict_for_exec(item, reply, compare)
    return verdict_for_judge(item, reply)

