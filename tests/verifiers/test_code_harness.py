"""The code verifier without Docker: output comparison, item validation, options, and the verdict
when no Docker engine answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox import wire
from verifiers.code import CodeItem, CodeVerifier, CodeVerifyConfig
from verifiers.code.datasets import apps_tests, humaneval_tests, mbpp_tests
from verifiers.code.harness import build_job, call_match, stdio_match, verdict_for
from verifiers.io import InputError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.parametrize("got,expected,same", [
    ("1\n2\n", "1 2", True),                 # line breaks and spaces do not matter
    ("  5  \n\n", "5\n", True),
    ("0.3333333", "0.33333333333", True),     # float formatting
    ("1.0", "1", True),
    ("1e3", "1000", True),
    ("0.34", "0.33", False),
    ("YES", "yes", False),                    # case matters
    ("1 2", "1 2 3", False),
    ("nan", "nan", True),                     # identical tokens
    ("1_0", "10", False),                     # Python's float() accepts it; a judge would not
    ("inf", "1e999", False),
    ("", "", True),
])
def test_stdio_match_table(got, expected, same):
    assert stdio_match(got, expected) is same


# compare="tokens" (default) vs compare="apps" (the APPS harness: every number within a tolerance).
@pytest.mark.parametrize("got,expected,tokens,apps", [
    ("1000000000", "1000000007", False, True),   # integers are exact by default
    ("1000000007", "1000000007", True, True),
    ("998244353 1", "998244353 2", False, False),
    ("100000000000000000001", "100000000000000000000", False, True),  # exact however many digits
    ("1000000007.0", "1000000000", False, True),  # an integer answer printed as a float: its exact value
    ("1.0", "1", True, True),
    ("1e3", "1000", True, True),
    ("0.50000001", "0.5", True, True),           # the expected token looks like a float: tolerance
    ("0.5", "5e-1", True, True),
    ("3.14159", "3.14160", True, True),           # within rtol 1e-5
    ("3.1", "3.2", False, False),
    ("5", "5.000001", True, True),                # expected float, output integer: within tolerance
    ("-0", "0", True, True),
    ("007", "7", True, True),
    ("1/2", "0.5", False, False),
    ("abc", "abd", False, False),
    ("inf", "1e999", False, False),
    ("1_0", "10", False, False),
])
def test_stdio_compare_modes_table(got, expected, tokens, apps):
    assert stdio_match(got, expected) is tokens
    assert stdio_match(got, expected, compare="tokens") is tokens
    assert stdio_match(got, expected, compare="apps") is apps


def test_stdio_compare_mode_is_checked():
    with pytest.raises(ValueError, match="unknown compare mode 'exact'"):
        stdio_match("1", "1", compare="exact")


def _exec_reply(stdout: str) -> dict:
    return {"tests": [{"i": 0, "status": "ok", "stdout": stdout}]}


def test_verdicts_use_the_items_compare_field_over_the_verifiers_default():
    item = CodeItem("p", "print(1)", {"style": "stdio", "inputs": [""], "outputs": ["1000000007\n"]})
    assert verdict_for(item, _exec_reply("1000000000\n")).reason == "wrong_answer"
    assert verdict_for(item, _exec_reply("1000000000\n"), compare="apps").is_pass
    apps_item = CodeItem("p", "print(1)", {**item.tests, "compare": "apps"})
    assert verdict_for(apps_item, _exec_reply("1000000000\n")).is_pass
    tokens_item = CodeItem("p", "print(1)", {**item.tests, "compare": "tokens"})
    assert not verdict_for(tokens_item, _exec_reply("1000000000\n"), compare="apps").is_pass
    float_item = CodeItem("p", "print(1)", {"style": "stdio", "inputs": [""], "outputs": ["0.333333\n"]})
    assert verdict_for(float_item, _exec_reply("0.3333333333\n")).is_pass


@pytest.mark.parametrize("got,expected,same", [
    (9, 9, True),
    ((1, 2), [1, 2], True),                   # tuples are lists in APPS' JSON
    (True, [True], True),                     # APPS wraps single values in a list
    ([[1, 2]], [[1, 2]], True),
    (0.1 + 0.2, 0.3, True),
    (2, [3], False),
    ("9", 9, False),
    ({"a": 1}, {"a": 1}, True),
    (None, [None], True),
])
def test_call_match_table(got, expected, same):
    assert call_match(got, expected) is same


def test_wire_round_trip_keeps_python_types():
    value = {1: (2, 3.5, float("inf")), "s": {4, 5}, "b": b"\x00", "c": 1 + 2j, "f": frozenset([1]), "n": None,
             "nested": [[True, -7], ("x",)]}
    assert wire.decode(wire.loads(wire.dumps(wire.encode(value)))) == value
    assert wire.decode(wire.from_json(json.loads(json.dumps(wire.to_json(wire.encode(value)))))) == value


def test_wire_sends_objects_with_rigged_eq_as_handles_equal_to_nothing():
    class Anything:
        def __eq__(self, other):
            return True

    encoded = wire.encode([Anything()], handles=lambda obj: 1)
    decoded = wire.decode(encoded)
    assert decoded != [1] and decoded != [None] and decoded != [[]] and decoded[0] != wire.Handle(1)
    with pytest.raises(TypeError):
        bool(decoded[0])
    with pytest.raises(wire.Unencodable):
        wire.encode(Anything())


def test_wire_reads_builtin_subclasses_through_the_base_type():
    class Liar(int):
        def __eq__(self, other):
            return True

        def __index__(self):
            return 999

    assert wire.encode(Liar(3)) == 3 and type(wire.encode(Liar(3))) is int


@pytest.mark.parametrize("bad", [b"__import__('os')", b"[1, 2", b"(lambda: 1)()", b"{'$x': 1}"])
def test_wire_rejects_anything_but_literals(bad):
    with pytest.raises(ValueError):
        wire.decode(wire.loads(bad + b"\n"))


def test_jobs_never_carry_expected_outputs_of_stdio_and_call_tests():
    secret = "expected-8d1c0f"
    limits = {"test_timeout_s": 1}
    stdio = CodeItem("a", "print(1)", {"style": "stdio", "inputs": ["1\n"], "outputs": [secret]})
    call = CodeItem("b", "def f(x): return x", {"style": "call", "fn_name": "f", "inputs": [[1]], "outputs": [secret]})
    for item in (stdio, call):
        assert secret not in json.dumps(build_job(item, item.response, limits))


ROW = {"id": "p1", "response": "print(1)", "tests": {"style": "stdio", "inputs": ["\n"], "outputs": ["1\n"]}}


@pytest.mark.parametrize("mutate,message", [
    (lambda r: r.pop("id"), "missing 'id'"),
    (lambda r: r.update(response=3), "missing 'response'"),
    (lambda r: r.update(tests={"style": "pytest"}), "tests.style must be one of"),
    (lambda r: r["tests"].update(outputs=[]), "as many outputs as inputs"),
    (lambda r: r.update(tests={"style": "call", "fn_name": "f x", "inputs": [[1]], "outputs": [1]}), "fn_name"),
    (lambda r: r.update(tests={"style": "humaneval", "prompt": "p", "test": "t", "entry_point": "f"}), "check"),
    (lambda r: r.update(tests={"style": "assert", "test_list": ["assert (("]}), r"test_list\[0\]"),
    (lambda r: r["tests"].update(compare="exact"), "tests.compare must be one of tokens, apps, got 'exact'"),
    (lambda r: r.update(tests={"style": "assert", "test_list": ["assert 1"], "compare": "apps"}),
     "tests.compare applies to stdio"),
])
def test_parse_item_names_where_and_what(mutate, message):
    row = json.loads(json.dumps(ROW))
    mutate(row)
    with pytest.raises(InputError, match=message) as info:
        CodeVerifier().parse_item(row, where="in.jsonl:7")
    assert str(info.value).startswith("in.jsonl:7: ")


def test_parse_item_accepts_every_dataset_format():
    v = CodeVerifier()
    he = json.loads((DATA / "humaneval" / "HumanEval.jsonl").open().readline())
    mb = json.loads((DATA / "mbpp" / "mbpp.jsonl").open().readline())
    apps = [json.loads(line) for line in (DATA / "apps" / "apps_10.jsonl").open()]
    items = [v.parse_item({"id": he["task_id"], "response": "", "tests": humaneval_tests(he)}),
             v.parse_item({"id": mb["task_id"], "response": "", "tests": mbpp_tests(mb)})]
    items += [v.parse_item({"problem_id": a["problem_id"], "response": "", "tests": apps_tests(a["input_output"])})
              for a in apps]
    assert [i.style for i in items[:2]] == ["humaneval", "assert"]
    assert {i.style for i in items[2:]} <= {"stdio", "call"}


def test_compare_option_of_the_code_verifier():
    assert CodeVerifier.from_options().config.compare == "tokens"
    assert CodeVerifier.from_options(compare="apps").config.compare == "apps"
    with pytest.raises(ValueError, match="compare: unknown mode 'loose'"):
        CodeVerifier.from_options(compare="loose")
    row = json.loads(json.dumps(ROW))
    row["tests"]["compare"] = "apps"
    assert CodeVerifier().parse_item(row).tests["compare"] == "apps"


def test_options_are_checked_with_a_hint():
    with pytest.raises(ValueError, match="did you mean 'timeout_per_test_s'"):
        CodeVerifyConfig.from_options(timeout_per_tset_s=1)
    with pytest.raises(ValueError, match="must be int"):
        CodeVerifyConfig.from_options(memory_mb="512")
    with pytest.raises(ValueError, match="extraction"):
        CodeVerifyConfig(extraction="first")
    assert CodeVerifyConfig.from_options(timeout_per_test_s=3).timeout_per_test_s == 3


def test_without_a_docker_engine_every_verdict_is_sandbox_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with CodeVerifier.from_options(pool_size=1) as v:
        items = [v.parse_item(ROW), v.parse_item({**ROW, "id": "p2"})]
        verdicts = v.verify_batch(items)
        assert [(x.outcome.value, x.reason) for x in verdicts] == [("error", "sandbox_unavailable")] * 2
        assert v.health()["available"] is False and v.health()["alive"] == 0


def test_a_response_without_code_is_no_code_without_touching_docker(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    v = CodeVerifier.from_options(extraction="last_fenced_block")
    assert v.verify_one(v.parse_item({**ROW, "response": "I don't know."})).reason == "no_code"
