"""Code tasks (issue #6): APPS in both layouts on the real data in ../shared/data (tests skipped and
counted, difficulty selection, the APPS standard prompt), MBPP's split and few-shot rule, HumanEval as a
task, the generated embedded code task, extraction policies, per-task prompts, and the configs.
The Docker tests at the end check the embedded task's reference solutions in the sandbox.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest

from rest_em.config import TaskSection, TransferSection, load_config
from rest_em.prompts import PromptFormat
from rest_em.tasks import TASKS, code_embedded, load_task, load_transfer, mbpp
from rest_em.tasks import apps as apps_mod
from rest_em.tasks.code_common import CodeProblem
from verifiers.io import InputError

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("REST_EM_DATA_DIR", ROOT.parent / "shared" / "data"))
needs_data = pytest.mark.skipif(not (DATA / "apps" / "apps_10.jsonl").exists(), reason=f"no shared data at {DATA}")
APPS_10 = DATA / "apps" / "apps_10.jsonl"
ORIGINAL = DATA / "apps" / "original_layout_train"


def _fmt(task, style="fewshot"):
    chat = (lambda msgs: "<user>" + msgs[0]["content"] + "<assistant>") if style == "chat" else None
    return PromptFormat(style, task.instruction, list(task.fewshot), chat, prompt=task.prompt)


def test_code_tasks_are_registered():
    assert {"apps", "humaneval", "mbpp", "code_embedded"} <= set(TASKS)


# ---------------------------------------------------------------------------------------------- APPS


@needs_data
def test_apps_hugging_face_layout_from_local_jsonl():
    problems, skipped = apps_mod.load_apps("test", APPS_10)
    rows = [json.loads(line) for line in APPS_10.read_text(encoding="utf-8").splitlines()]
    assert len(problems) == len(rows) == 10 and not skipped
    assert [p.problem_id for p in problems] == [f"apps/test/{r['problem_id']:04d}" for r in rows]
    names = {v: k for k, v in apps_mod.DIFFICULTIES.items()}
    assert [names[p.level] for p in problems] == [r["difficulty"] for r in rows]
    for p, r in zip(problems, rows):
        io = json.loads(r["input_output"])
        assert p.tests["style"] == "stdio" and len(p.tests["inputs"]) == len(io["inputs"])
        assert p.tests["outputs"][0].split() == str(io["outputs"][0]).split()
        assert p.question == r["question"] and p.solution is None  # this copy has no solutions


@needs_data
def test_apps_original_folder_layout():
    problems, skipped = apps_mod.load_apps("train", ORIGINAL)
    by_id = {p.problem_id.rsplit("/", 1)[1]: p for p in problems}
    assert sorted(by_id) == ["0001", "0111", "2287", "2404", "4184"] and not skipped
    assert {k: p.level for k, p in by_id.items()} == {"0001": 2, "0111": 2, "2287": 3, "2404": 1, "4184": 1}
    assert by_id["2404"].tests == {"style": "call", "fn_name": "findKthPositive", "inputs": [[[2, 3, 4, 7, 11], 5]],
                                   "outputs": [9]}
    assert by_id["2404"].starter_code.startswith("class Solution:")
    assert by_id["4184"].starter_code.startswith("def is_prime(n):") and by_id["0001"].starter_code == ""
    for k, p in by_id.items():  # the first reference solution becomes the few-shot solution
        assert p.solution == json.loads((ORIGINAL / k / "solutions.json").read_text(encoding="utf-8"))[0]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _row(pid, io, difficulty="introductory", **extra):
    return {"problem_id": pid, "question": f"Problem {pid}", "difficulty": difficulty, "starter_code": "",
            "input_output": io, **extra}


def test_apps_problems_without_tests_are_skipped_and_counted(tmp_path, caplog):
    good = json.dumps({"inputs": ["1\n"], "outputs": ["2\n"]})
    path = _write_jsonl(tmp_path / "apps.jsonl", [
        _row(1, good), _row(2, ""), _row(3, json.dumps({"inputs": [], "outputs": []})),
        _row(4, "{not json"), _row(5, json.dumps({"inputs": ["1\n", "2\n"], "outputs": ["2\n"]})),
        _row(6, json.dumps({"fn_name": "f", "inputs": [[1], [2]], "outputs": [2, 3]}), "interview"),
    ])
    with caplog.at_level("WARNING"):
        problems, skipped = apps_mod.load_apps("test", path)
    assert [p.problem_id for p in problems] == ["apps/test/0001", "apps/test/0006"]
    assert skipped == Counter({"no_tests": 2, "malformed_tests": 2})
    assert "skipped 4 problems" in caplog.text and "apps.jsonl:4" in caplog.text  # where the bad row is
    assert problems[1].tests["style"] == "call"
    # Through the task: the skipped problems are nowhere, and the count travels with the task.
    task = load_task(TaskSection(name="apps", test_path=str(path), num_train=0, num_test=None, num_fewshot=0))
    assert len(task.test) == 2 and task.skipped == {"no_tests": 2, "malformed_tests": 2}


def test_apps_malformed_rows_name_file_and_line(tmp_path):
    path = _write_jsonl(tmp_path / "bad.jsonl", [_row(1, "{}"), {"problem_id": 2, "difficulty": "interview"}])
    with pytest.raises(InputError, match=r"bad\.jsonl:2: field 'question'"):
        apps_mod.load_apps("test", path)
    path = _write_jsonl(tmp_path / "bad2.jsonl", [_row(1, "{}", difficulty="hard")])
    with pytest.raises(InputError, match=r"bad2\.jsonl:1: 'difficulty' must be one of"):
        apps_mod.load_apps("test", path)


@needs_data
def test_apps_hub_first_then_local_fallback(monkeypatch, caplog):
    calls = []

    def unreachable(name, split):
        calls.append((name, split))
        raise ConnectionError("no hub here")

    monkeypatch.setattr(apps_mod, "read_hub", unreachable)
    with caplog.at_level("WARNING"):
        problems, _ = apps_mod.load_apps("test", APPS_10, hub_name="codeparrot/apps")
    assert calls == [("codeparrot/apps", "test")] and len(problems) == 10
    assert "could not load codeparrot/apps[test] from the hub" in caplog.text

    hub_rows = [(f"hub:{i}", _row(i, json.dumps({"inputs": ["1\n"], "outputs": ["1\n"]}), "competition"))
                for i in range(3)]
    monkeypatch.setattr(apps_mod, "read_hub", lambda name, split: iter(hub_rows))
    problems, _ = apps_mod.load_apps("train", "/nonexistent", hub_name="codeparrot/apps")
    assert [p.problem_id for p in problems] == ["apps/train/0000", "apps/train/0001", "apps/train/0002"]


@needs_data
def test_apps_difficulty_is_selectable():
    for levels, want in (([1], {1}), ([2, 3], {2, 3}), (None, {1, 2, 3})):
        task = load_task(TaskSection(name="apps", train_path=str(ORIGINAL), test_path=str(APPS_10), levels=levels,
                                     num_train=None, num_test=None, num_fewshot=0))
        assert {p.level for p in (*task.train, *task.test)} == want
    intro = load_task(TaskSection(name="apps", train_path=str(ORIGINAL), test_path=str(APPS_10), levels=[1],
                                  num_train=None, num_test=None, num_fewshot=0))
    assert sorted(p.problem_id for p in intro.train) == ["apps/train/2404", "apps/train/4184"]
    assert len(intro.test) == 3


@needs_data
def test_apps_standard_prompt_format():
    task = load_task(TaskSection(name="apps", train_path=str(ORIGINAL), test_path=str(APPS_10), num_train=None,
                                 num_test=None, num_fewshot=1, seed=0))
    fmt = _fmt(task)
    train = {p.problem_id: p for p in task.train}
    call = train.get("apps/train/2404") or train["apps/train/4184"]
    text = fmt.render(call)
    shot = task.fewshot[0]
    assert text.startswith("\nQUESTION:\n" + shot.question)  # the solved example comes first
    assert shot.solution.rstrip() in text and shot.problem_id not in train  # held out of the train split
    assert text.endswith(f"\nQUESTION:\n{call.question}\n{call.starter_code}\nUse Call-Based format\nANSWER:\n")
    stdio = task.test[0]
    assert apps_mod.apps_question(stdio) == f"\nQUESTION:\n{stdio.question}\nUse Standard Input format\nANSWER:\n"
    assert fmt.stop == ("\nQUESTION:",)
    chat = _fmt(task, "chat").render(stdio)
    assert chat.startswith("<user>QUESTION:\n") and "Use Standard Input format\nANSWER:" in chat
    assert "```python" in chat and chat.endswith("<assistant>")


# ------------------------------------------------------------------------------------ HumanEval, MBPP


@needs_data
def test_humaneval_task_as_transfer_and_as_training_set():
    tr = load_transfer(TaskSection(name="code_embedded", num_train=2, num_test=2,
                                   transfer=TransferSection(name="humaneval")))
    assert tr is not None and tr.domain == "code" and len(tr.test) == 164 and not tr.train
    assert tr.test[0].problem_id == "HumanEval/0" and tr.test[0].tests["style"] == "humaneval"
    task = load_task(TaskSection(name="humaneval", num_train=None, num_test=64, seed=1))
    assert len(task.test) == 64 and len(task.train) == 100
    assert not {p.problem_id for p in task.train} & {p.problem_id for p in task.test}
    fmt = _fmt(task)
    assert fmt.render(task.test[0]) == task.test[0].question and "\ndef" in fmt.stop
    assert "```python\n" + task.test[0].question.rstrip() + "\n```" in _fmt(task, "chat").render(task.test[0])


@needs_data
def test_mbpp_split_and_fewshot_examples_are_never_test_items():
    splits = mbpp.load_mbpp()
    ids = {k: [int(p.problem_id.split("/")[1]) for p in v] for k, v in splits.items()}
    assert sorted(ids["fewshot"]) == list(range(1, 11)) and ids["fewshot"][:3] == [2, 3, 4]
    assert ids["test"] == list(range(11, 511)) and ids["train"] == list(range(601, 975))
    task = load_task(TaskSection(name="mbpp", num_train=None, num_test=None, num_fewshot=3))
    fewshot_ids = {p.problem_id for p in task.fewshot}
    assert fewshot_ids == {"mbpp/2", "mbpp/3", "mbpp/4"}
    all_items = {p.problem_id for p in (*task.train, *task.test)}
    assert not {f"mbpp/{i}" for i in range(1, 11)} & all_items
    p = task.test[0]
    assert p.tests == {"style": "assert", "test_list": p.tests["test_list"], "setup": ""} and len(p.tests["test_list"]) == 3
    text = _fmt(task).render(p)
    assert text.count("[BEGIN]") == 4 and text.count("[DONE]") == 3 and text.endswith("[BEGIN]\n")
    assert text.startswith("You are an expert Python programmer, and here is your task: ")
    assert _fmt(task).stop == ("[DONE]",)
    # The sanitized file reads too (prompt/test_imports fields); its ids are a subset.
    sanitized = mbpp.load_mbpp(DATA / "mbpp" / "sanitized-mbpp.json")
    assert sum(len(v) for v in sanitized.values()) == 427 and "mbpp/2" in {q.problem_id for q in sanitized["fewshot"]}


# ------------------------------------------------------------------------------------ embedded task


def test_embedded_code_task_is_deterministic_and_splits_are_disjoint():
    a = load_task(TaskSection(name="code_embedded", num_train=60, num_test=40, num_fewshot=2, seed=3))
    b = load_task(TaskSection(name="code_embedded", num_train=60, num_test=40, num_fewshot=2, seed=3))
    c = load_task(TaskSection(name="code_embedded", num_train=60, num_test=40, num_fewshot=2, seed=4))
    assert a.train == b.train and a.test == b.test and a.fewshot == b.fewshot
    assert [p.question for p in a.test] != [p.question for p in c.test]
    assert load_task(TaskSection(name="code_embedded", num_train=5, num_test=40, seed=3)).test == a.test
    questions = [p.question for p in (*a.train, *a.test, *a.fewshot)]
    assert len(questions) == len(set(questions)) == 102  # no instance in two splits


def test_embedded_code_task_mixes_styles_levels_and_shares_templates():
    t = load_task(TaskSection(name="code_embedded", num_train=120, num_test=60, seed=0))
    assert t.domain == "code" and all(isinstance(p, CodeProblem) for p in (*t.train, *t.test))
    assert {p.level for p in t.test} == {1, 2, 3}
    assert Counter(p.tests["style"] for p in t.test).keys() == {"call", "stdio"}

    def template(p):  # the question with its numbers and function names taken out
        return re.sub(r"`[^`]*`|-?\d+", "", p.question)

    shared = {template(p) for p in t.test} & {template(p) for p in t.train}
    assert len(shared) >= 8 and {p.level for p in t.train if template(p) in shared} == {1, 2, 3}
    only_2 = load_task(TaskSection(name="code_embedded", num_train=10, num_test=10, levels=[2], seed=0))
    assert {p.level for p in (*only_2.train, *only_2.test)} == {2}
    with pytest.raises(ValueError, match="levels must be a non-empty subset"):
        load_task(TaskSection(name="code_embedded", num_train=1, num_test=1, levels=[7]))


def test_embedded_tests_follow_their_rule():
    """The expected outputs are the template's rule applied to the inputs (spot checks, independent code)."""
    train, test, _ = code_embedded.generate(300, 0, seed=5)
    checked = Counter()
    for p in train:
        t, q = p.tests, p.question
        if "returns x plus" in q:
            c = int(q.rsplit(" ", 1)[1].rstrip("."))
            assert t["outputs"] == [a[0] + c for a in t["inputs"]]
            checked["plus"] += 1
        elif "returns the string s reversed" in q:
            assert t["outputs"] == [a[0][::-1] for a in t["inputs"]]
            checked["reverse"] += 1
        elif "prints their product" in q:
            assert t["outputs"] == [f"{int(s.split()[0]) * int(s.split()[1])}\n" for s in t["inputs"]]
            checked["product"] += 1
    assert min(checked.values()) >= 1 and len(checked) == 3


def test_embedded_prompts_chat_and_fewshot():
    t = load_task(TaskSection(name="code_embedded", num_train=4, num_test=4, num_fewshot=2, seed=0))
    p = t.test[0]
    assert _fmt(t, "chat").render(p) == f"<user>{p.question}\n\n{code_embedded.INSTRUCTION}<assistant>"
    text = _fmt(t).render(p)
    assert text.count("Problem:\n") == 3 and text.endswith(f"Problem:\n{p.question}\n\nSolution:\n")
    assert all(ex.solution.startswith("```python\n") for ex in t.fewshot)
    # A chat answer ends with its first code block; the opening fence (it names a language) does not stop it.
    assert _fmt(t, "chat").stop == ("\n```\n",) and _fmt(t).stop == ("\n\nProblem:", "\nProblem:")
    from rest_em.sampling.params import truncate_at_stop

    answer = "```python\ndef f(x):\n    return x\n```\n\nExample usage:\n```python\nprint(f(1))\n```\n"
    cut, was_cut = truncate_at_stop(answer, _fmt(t, "chat").stop)
    assert was_cut and p.verifier_row(cut)["response"] == "def f(x):\n    return x"


# ------------------------------------------------------------------------------------------ extraction

EXTRACTION_TABLE = [
    # (policy, response, program given to the verifier)
    ("auto", "Here:\n```python\nprint(1)\n```\nDone.", "print(1)\n"),
    ("auto", "print(2)\n", "print(2)\n"),
    ("auto", "```python\nx = 1\n```\nthen\n```python\nprint(x)\n```", "print(x)\n"),
    ("last_fenced_block", "```py\ndef f(x):\n    return x\n```", "def f(x):\n    return x\n"),
    ("last_fenced_block", "print(3)\n", ""),  # no block: no program (scored no_code)
    ("last_fenced_block", "```python\nprint(4)\n```\n```text\n4\n```", "print(4)\n"),  # sample output skipped
    ("whole_text", "```python\nprint(5)\n```", "```python\nprint(5)\n```"),
    ("whole_text", "    return x + 1\n", "    return x + 1\n"),  # a HumanEval-style completion
    ("auto", "```python\ndef f(x):\n    return x", "def f(x):\n    return x"),  # ended by the chat stop
]


@pytest.mark.parametrize(("policy", "response", "program"), EXTRACTION_TABLE)
def test_extraction_policy_is_applied_before_the_verifier(policy, response, program):
    p = CodeProblem("x/1", "q", {"tests": {"style": "stdio", "inputs": ["\n"], "outputs": ["1\n"]}}, extraction=policy)
    row = p.verifier_row(response, sample_idx=3)
    assert row == {"id": "x/1#3", "tests": p.payload["tests"], "response": program}


def test_unknown_extraction_policy_is_an_error():
    with pytest.raises(ValueError, match="unknown code extraction policy 'first_block'"):
        code_embedded.generate(1, 1, 0, extraction="first_block")


# --------------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize("name", ["code-default.yaml", "apps.yaml"])
def test_code_configs_load(name):
    cfg = load_config(ROOT / "configs" / name)
    assert cfg.task.name in TASKS and cfg.eval.maj_k <= cfg.eval.n  # code maj@k votes by the programs' outputs
    assert all(k <= cfg.eval.n for k in cfg.eval.k_list)


def test_apps_recipe_follows_the_paper():
    cfg = load_config(ROOT / "configs" / "apps.yaml")
    assert cfg.task.name == "apps" and cfg.task.levels == [1] and cfg.task.hub_name == "codeparrot/apps"
    assert cfg.sampling.n == 64 and cfg.filter.cap == 10 and cfg.iterations == 1
    assert cfg.task.transfer.name == "humaneval"


@needs_data
def test_code_default_config_builds_its_task():
    cfg = load_config(ROOT / "configs" / "code-default.yaml")
    task, transfer = load_task(cfg.task), load_transfer(cfg.task)
    assert task.name == "code_embedded" and len(task.train) == cfg.task.num_train and len(task.test) == cfg.task.num_test
    assert transfer is None or transfer.domain == "code"


# ----------------------------------------------------------------------------------- Docker: sandbox


@pytest.fixture(scope="module")
def verifier(docker_client):  # docker_client: skips (or fails in CI) without an engine
    from verifiers.code import CodeVerifier

    with CodeVerifier.from_options(timeout_per_test_s=4.0) as v:
        yield v


@pytest.mark.docker
def test_embedded_reference_solutions_pass_and_wrong_ones_fail(verifier):
    train, test, fewshot = code_embedded.generate(60, 30, seed=0)
    problems = [*train, *test, *fewshot]
    covered = {t.__name__ for lv in code_embedded.TEMPLATES.values() for t in lv}
    items = [verifier.parse_item(p.verifier_row(p.solution)) for p in problems]
    verdicts = verifier.verify_batch(items)
    assert [(p.problem_id, v.reason) for p, v in zip(problems, verdicts) if not v.is_pass] == []
    assert len({p.question.split("`")[0][:40] for p in problems}) >= len(covered) // 2

    wrong = {"call": "```python\ndef {fn}(*args):\n    return 123456789\n```", "stdio": "```python\nprint('nope')\n```"}
    bad = [verifier.parse_item(p.verifier_row(wrong[p.tests["style"]].replace("{fn}", p.tests.get("fn_name", ""))))
           for p in problems[:20]]
    assert {v.reason for v in verifier.verify_batch(bad)} == {"wrong_answer"}
    reasons = [v.reason for v in verifier.verify_batch([
        verifier.parse_item(problems[0].verifier_row("```python\ndef broken(:\n```")),
        verifier.parse_item(problems[0].verifier_row("I cannot write code.")),
    ])]
    assert reasons[0] == "syntax_error" and reasons[1] in ("syntax_error", "no_code")


# ------------------------------------------------------------------------------- metrics and report


def test_verdict_reasons_are_counted_and_reported_and_maj_is_left_out_for_code():
    from rest_em.metrics import reason_counts
    from rest_em.report import render_markdown

    rows = [{"verdict": "pass", "reason": "correct"}, {"verdict": "fail", "reason": "wrong_answer"},
            {"verdict": "fail", "reason": "wrong_answer"}, {"verdict": "fail", "reason": "timeout"},
            {"verdict": "error", "reason": "sandbox_unavailable"}]
    counts = reason_counts(rows)
    assert counts == {"error": {"sandbox_unavailable": 1}, "fail": {"wrong_answer": 2, "timeout": 1},
                      "pass": {"correct": 1}}
    ev = {"greedy_pass@1": 0.5, "pass@1": 0.25, "num_problems": 2, "verdicts": {}, "reasons": counts}
    entry = {"iteration": 0, "policy": "base model", "eval": ev, "transfer": None, "train_set": None, "notes": [],
             "estep_reasons": None, "timing": dict.fromkeys(
                 ("estep_sampling_s", "estep_tokens_per_s", "mstep_s", "mstep_tokens_per_s", "eval_sampling_s",
                  "eval_tokens_per_s"))}
    data = {"run": "r", "task": "code_embedded", "model": "m", "k_list": [1], "maj_k": 4, "transfer_task": None,
            "iterations": [entry]}
    md = render_markdown(data)
    assert "maj@4" not in md  # no evaluation computed it: the column is left out, not shown empty
    assert "## Verdict reasons (samples)" in md
    assert "| iter | stage | pass: correct | error: sandbox_unavailable | fail: timeout | fail: wrong_answer |" in md
    assert "| 0 | eval | 1 | 1 | 1 | 2 |" in md
