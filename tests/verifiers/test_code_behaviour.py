"""Programs' behaviour on their tests' inputs (behaviour-based maj@k for code), in the real sandbox.

Run: .venv/bin/python -m pytest -q tests/verifiers/test_code_behaviour.py   (needs Docker)
"""

from __future__ import annotations

import pytest

from verifiers.code import CodeItem

pytestmark = pytest.mark.docker

STDIO = {"style": "stdio", "inputs": ["2 3\n", "10 -4\n"], "outputs": ["5\n", "6\n"]}
CALL = {"style": "call", "fn_name": "f", "inputs": [[1], [4]], "outputs": [2, 8]}


def fenced(code: str) -> str:
    return f"```python\n{code}```\n"


def test_programs_that_do_the_same_thing_share_a_behaviour_and_crashes_do_not_vote(code_verifier):
    items = [
        CodeItem("a", fenced("a, b = map(int, input().split())\nprint(a + b)\n"), STDIO),
        CodeItem("b", fenced("x = sum(int(t) for t in input().split())\nprint( x )\n"), STDIO),  # same outputs
        CodeItem("c", fenced("a, b = map(int, input().split())\nprint(a * b)\n"), STDIO),  # other outputs
        CodeItem("d", fenced("raise SystemExit(input() and 1)\n"), STDIO),  # crashes
        CodeItem("e", fenced("while True:\n    pass\n"), STDIO),  # times out
        CodeItem("f", "", STDIO),
        CodeItem("g", fenced("def f(x):\n    return x * 2\n"), CALL),
        CodeItem("h", fenced("def f(x):\n    return x + x\n"), CALL),
        CodeItem("i", fenced("def f(x):\n    return [x]\n"), CALL),
        CodeItem("j", fenced("def f(x):\n    return 1 / 0\n"), CALL),
        CodeItem("k", fenced("def g(x):\n    return x\n"),
                 {"style": "humaneval", "prompt": "", "test": "def check(c):\n    assert c(1) == 1\n", "entry_point": "g"}),
    ]
    got = code_verifier.behaviour_batch(items)
    out = {it.id: g for it, g in zip(items, got)}
    assert out["a"] == (("5", "6"), "ok") and out["b"][0] == out["a"][0]
    assert out["c"][0] == ("6", "-40")
    assert out["d"][0] is None and out["d"][1] == "runtime_error"
    assert out["e"][0] is None and out["e"][1] == "timeout"
    assert out["f"] == (None, "no_code")
    assert out["g"][0] == out["h"][0] == ("2", "8") and out["i"][0] == ("[1]", "[4]")  # wire JSON of plain data
    assert out["j"][0] is None and out["j"][1] == "runtime_error"
    assert out["k"] == (None, "no_inputs (humaneval tests)")
