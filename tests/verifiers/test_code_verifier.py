"""The code verifier against the real sandbox on real data: HumanEval, MBPP and APPS, the four test
styles, every verdict reason, order and determinism.

Run: .venv/bin/python -m pytest -q tests/verifiers/test_code_verifier.py   (needs Docker)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verifiers.code import CodeItem
from verifiers.code.datasets import apps_tests, humaneval_tests, mbpp_tests

pytestmark = pytest.mark.docker

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
HUMANEVAL = [json.loads(line) for line in (DATA / "humaneval" / "HumanEval.jsonl").open()]
MBPP = [json.loads(line) for line in (DATA / "mbpp" / "mbpp.jsonl").open()]
APPS = DATA / "apps" / "original_layout_train"


def he_item(row: dict, response: str) -> CodeItem:
    return CodeItem(row["task_id"], response, humaneval_tests(row))


def outcomes(verdicts) -> list[str]:
    return [f"{v.outcome}:{v.reason}" for v in verdicts]


def test_humaneval_subset_canonical_pass_broken_and_exit_hack_fail_identically_twice(code_verifier):
    rows = HUMANEVAL[::6]  # 28 problems across the set
    items = ([he_item(r, r["canonical_solution"]) for r in rows]
             + [he_item(r, "    return None\n") for r in rows]
             + [he_item(r, r["canonical_solution"] + "\nimport os\nos._exit(0)\n") for r in rows])
    first = outcomes(code_verifier.verify_batch(items))
    n = len(rows)
    assert first[:n] == ["pass:correct"] * n
    assert all(v.startswith("fail:") for v in first[n:])
    assert first == outcomes(code_verifier.verify_batch(items))


def test_mbpp_reference_solutions_pass_and_a_wrong_one_names_the_failing_test(code_verifier):
    rows = [r for r in MBPP[10:60] if not r["test_setup_code"]]
    verdicts = code_verifier.verify_batch([CodeItem(str(r["task_id"]), r["code"], mbpp_tests(r)) for r in rows])
    assert outcomes(verdicts) == ["pass:correct"] * len(rows)
    # task 11 (remove first and last occurrence of a char): right on the first test only.
    row = MBPP[0] if MBPP[0]["task_id"] == 11 else next(r for r in MBPP if r["task_id"] == 11)
    wrong = "def remove_Occ(s, ch):\n    return 'heo' if s == 'hello' else s\n"
    verdict = code_verifier.verify_batch([CodeItem("11", wrong, mbpp_tests(row))])[0]
    assert verdict.reason == "wrong_answer" and "test 1" in verdict.message, verdict


def _apps(problem: str) -> tuple[dict, list[str]]:
    d = APPS / problem
    return apps_tests(json.loads((d / "input_output.json").read_text())), json.loads((d / "solutions.json").read_text())


@pytest.mark.parametrize("problem,style", [("0001", "stdio"), ("0111", "stdio"), ("4184", "call"), ("2404", "call")])
def test_apps_reference_solutions_pass(code_verifier, problem, style):
    tests, solutions = _apps(problem)
    assert tests["style"] == style
    verdicts = code_verifier.verify_batch([CodeItem(f"{problem}#{k}", s, tests) for k, s in enumerate(solutions[:3])])
    assert outcomes(verdicts) == ["pass:correct"] * len(verdicts)


def test_apps_call_style_compares_outside_and_names_the_test(code_verifier):
    tests, _ = _apps("4184")  # is_prime over 8 inputs; input 2 (value 5) is prime
    wrong = "def is_prime(n):\n    return n in (2,)\n"
    verdict = code_verifier.verify_batch([CodeItem("4184", wrong, tests)])[0]
    assert verdict.reason == "wrong_answer" and "test 2" in verdict.message, verdict


STDIO = {"style": "stdio", "inputs": ["3\n", "4\n"], "outputs": ["9\n", "16\n"]}
REASONS = [
    ("n = int(input())\nprint(n * n)\n", "pass", "correct"),
    ("n = int(input())\nprint(n * n if n == 3 else 0)\n", "fail", "wrong_answer"),
    ("print(int(input()) ** 2\n", "fail", "syntax_error"),
    ("```python\nprint(1/0)\n```", "fail", "runtime_error"),
    ("\n   \n", "fail", "no_code"),
    ("while True:\n    pass\n", "fail", "timeout"),
    ("x = bytearray(1 << 40)\n", "fail", "memory_limit"),
    ("import sys\nsys.stdout.write('y' * (64 << 20))\n", "fail", "output_limit"),
]


def test_every_verdict_reason_in_one_concurrent_batch_in_order(code_verifier):
    items = [CodeItem(f"r{i}", code, STDIO) for i, (code, _, _) in enumerate(REASONS)]
    verdicts = code_verifier.verify_batch(items)
    assert [(v.outcome.value, v.reason) for v in verdicts] == [(o, r) for _, o, r in REASONS]
    assert "test 1" in verdicts[1].message


def test_humaneval_solution_given_as_a_fenced_full_function(code_verifier):
    row = HUMANEVAL[2]  # truncate_number
    response = f"Sure:\n```python\ndef {row['entry_point']}(number: float) -> float:\n    return number % 1.0\n```\n"
    assert code_verifier.verify_batch([he_item(row, response)])[0].is_pass


def test_health_reports_the_pool(code_verifier):
    code_verifier.verify_batch([CodeItem("h", "print(9)", {"style": "stdio", "inputs": [""], "outputs": ["9"]})])
    health = code_verifier.health()
    assert health["alive"] == health["size"] == 2
    assert health["jobs_run"] >= 1 and "replaced" in health


@pytest.mark.parametrize("task_id", [126, 533, 596, 601])
def test_mbpp_tests_that_use_the_programs_names_beyond_one_function(code_verifier, task_id):
    # 126 shadows the builtin sum; 533 passes the type int; 596 uses the program's `import sys`;
    # 601 builds objects of the program's class Pair and passes them back to it.
    row = next(r for r in MBPP if r["task_id"] == task_id)
    verdict = code_verifier.verify_batch([CodeItem(str(task_id), row["code"], mbpp_tests(row))])[0]
    assert verdict.is_pass, verdict


def test_mbpp_setup_code_that_needs_the_programs_classes_is_an_unsupported_test_error(code_verifier):
    row = next(r for r in MBPP if r["task_id"] == 927)  # test_setup_code builds a tree of the program's Node
    verdict = code_verifier.verify_batch([CodeItem("927", row["code"], mbpp_tests(row))])[0]
    assert (verdict.outcome.value, verdict.reason) == ("error", "unsupported_test")


# Output comparison on the host (issue #12): integers exact by default, floats within a tolerance,
# the APPS rule only when the item (or the verifier) asks for compare: apps.
BIG = {"style": "stdio", "inputs": ["\n"], "outputs": ["1000000007\n"]}
FLOAT = {"style": "stdio", "inputs": ["\n"], "outputs": ["0.3333333333\n"]}


@pytest.mark.parametrize("program,tests,expected", [
    ("print(1000000000)\n", BIG, "fail:wrong_answer"),
    ("print(1000000007)\n", BIG, "pass:correct"),
    ("print(1000000000)\n", {**BIG, "compare": "apps"}, "pass:correct"),
    ("print(1/3)\n", FLOAT, "pass:correct"),
    ("print(0.3334)\n", FLOAT, "fail:wrong_answer"),
])
def test_stdio_integers_are_exact_and_floats_within_tolerance(code_verifier, program, tests, expected):
    assert outcomes(code_verifier.verify_batch([CodeItem("cmp", program, tests)])) == [expected]
