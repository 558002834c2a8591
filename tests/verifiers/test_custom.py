"""The custom-verifier hook: a user's function, run in killable worker processes, judged three-way."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from verifiers.custom import CustomSpecError, CustomVerifier, calling_convention, judge, load_function
from verifiers.io import InputError
from verifiers.registry import get_verifier
from verifiers.verdict import Outcome

ROOT = Path(__file__).resolve().parents[2]

USER_MODULE = '''
import time


def judge(response, reference, problem):
    """Every return shape the hook accepts, chosen by the reference."""
    if reference == "none":
        return None
    if reference == "raise":
        raise RuntimeError("reference store offline")
    if reference == "sleep":
        time.sleep(30)
    if reference == "half":
        return 0.5
    if reference == "dict":
        return {"score": 1, "reason": "matched", "answer": response.split()[-1]}
    if reference == "list":
        return [1]
    return response.strip().endswith(str(reference))


def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    return {"score": float(solution_str.strip().endswith(ground_truth)), "source": data_source,
            "index": (extra_info or {}).get("index")}


def two_args(response, reference):
    return True
'''


@pytest.fixture(scope="module")
def user_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("user") / "my_rewards.py"
    path.write_text(USER_MODULE)
    return path


@pytest.fixture(scope="module")
def verifier(user_file):
    v = CustomVerifier.from_options(spec=f"{user_file}:judge", threshold=0.6, timeout_s=2.0, workers=2)
    yield v
    v.close()


def _item(v, ref, response="the answer is 7", **extra):
    return v.parse_item({"id": f"p-{ref}", "response": response, "reference": ref, **extra})


def test_every_return_shape_becomes_the_right_verdict(verifier):
    refs = ["7", "8", "none", "raise", "half", "dict", "list"]
    verdicts = verifier.verify_batch([_item(verifier, r) for r in refs])
    got = {r: (v.outcome, v.reason) for r, v in zip(refs, verdicts)}
    assert got["7"] == (Outcome.PASS, "correct")
    assert got["8"] == (Outcome.FAIL, "wrong_answer")
    # None and an exception are our side: error, never a 0.
    assert got["none"] == (Outcome.ERROR, "custom_returned_none")
    assert got["raise"] == (Outcome.ERROR, "verifier_exception")
    assert "reference store offline" in verdicts[3].message
    assert got["half"] == (Outcome.FAIL, "wrong_answer")  # 0.5 < threshold 0.6
    assert got["dict"] == (Outcome.PASS, "correct") and verdicts[5].answer == "7" and verdicts[5].message == "matched"
    assert got["list"] == (Outcome.ERROR, "custom_bad_return")


def test_a_hanging_function_is_killed_and_the_pool_goes_on(verifier):
    verdicts = verifier.verify_batch([_item(verifier, "sleep"), _item(verifier, "7")])
    assert (verdicts[0].outcome, verdicts[0].reason) == (Outcome.FAIL, "timeout")
    assert verdicts[1].is_pass
    assert verifier.pool.replaced >= 1


def test_verl_compute_score_is_recognised_by_its_parameter_names(user_file):
    fn = load_function(f"{user_file}:compute_score")
    assert calling_convention(fn) == "verl"
    with CustomVerifier.from_options(spec=f"{user_file}:compute_score", workers=1) as v:
        problem = {"data_source": "gsm8k", "columns": {"extra_info": {"index": 3}}}
        items = [v.parse_item({"id": i, "response": resp, "reference": "18", "problem": problem})
                 for i, resp in enumerate(["so 18", "so 19"])]
        assert [x.outcome for x in v.verify_batch(items)] == [Outcome.PASS, Outcome.FAIL]


def test_module_spec_and_bad_specs(user_file, monkeypatch):
    monkeypatch.syspath_prepend(str(user_file.parent))
    assert load_function("my_rewards:judge")("x 7", "7", {}) is True
    with pytest.raises(CustomSpecError, match="no attribute 'nope'.*judge"):
        load_function("my_rewards:nope")
    with pytest.raises(CustomSpecError, match="cannot import module"):
        load_function("no_such_module_xyz:f")
    with pytest.raises(CustomSpecError, match="expected 'package.module:function'"):
        load_function("my_rewards")
    with pytest.raises(CustomSpecError, match="no such file"):
        load_function(f"{user_file.parent}/missing.py:f")
    with pytest.raises(CustomSpecError, match="2 positional"):
        CustomVerifier.from_options(spec=f"{user_file}:two_args")


def test_judge_without_workers():
    assert judge(True, 1.0).is_pass and not judge(False, 1.0).is_pass
    assert judge(1.0, 1.0).is_pass and judge(0.99, 1.0).outcome is Outcome.FAIL
    assert judge({"score": 0.0, "reason": "no_answer"}, 1.0).reason == "no_answer"
    assert judge({"reason": "x"}, 1.0).reason == "custom_bad_return"
    assert judge(float("nan"), 1.0).is_error


def test_parse_item_names_what_is_wrong(verifier):
    with pytest.raises(InputError, match="row 3: missing key 'reference'"):
        verifier.parse_item({"id": "a", "response": "x"}, where="row 3")
    with pytest.raises(InputError, match="'problem' must be a JSON object"):
        verifier.parse_item({"id": "a", "response": "x", "reference": 1, "problem": [1]})
    # Without a problem object the row's other keys are the problem.
    item = verifier.parse_item({"id": "a", "response": "x", "reference": 1, "topic": "algebra"})
    assert item.problem == {"topic": "algebra", "id": "a"}


def test_registry_builds_it():
    v = get_verifier("custom", spec="verifiers.verdict:Verdict", timeout_s=1.0)  # any importable callable
    assert v.domain == "custom"
    v.close()


def test_verify_cli_custom_needs_no_domain(user_file, tmp_path):
    rows = [{"id": 1, "response": "the answer is 7", "reference": "7"}, {"id": 2, "response": "it is 5", "reference": "7"},
            {"id": 3, "response": "?", "reference": "none"}]
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = [sys.executable, "-m", "rest_em.cli", "verify", "--custom", f"{user_file}:judge", "--workers", "1", str(src), "-o", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["verdict"] for r in got] == ["pass", "fail", "error"]
    one = subprocess.run([sys.executable, "-m", "rest_em.cli", "verify", "--custom", f"{user_file}:judge",
                          "--reference", "7", "--response", "so 7"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert one.returncode == 0 and json.loads(one.stdout)["verdict"] == "pass", one.stderr
    bad = subprocess.run([sys.executable, "-m", "rest_em.cli", "verify", "--custom", "nope_mod:f", str(src), "-o", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "cannot import module 'nope_mod'" in bad.stderr


def test_file_spec_is_loaded_in_the_workers_too(tmp_path):
    path = tmp_path / "pid_reward.py"
    path.write_text(textwrap.dedent("""
        import os
        def f(response, reference, problem):
            return {"score": 1.0, "answer": str(os.getpid())}
    """))
    with CustomVerifier.from_options(spec=f"{path}:f", workers=1) as v:
        verdict = v.verify_batch([v.parse_item({"id": 1, "response": "", "reference": None})])[0]
    import os

    assert verdict.is_pass and verdict.answer != str(os.getpid())  # ran in a worker process, not here
