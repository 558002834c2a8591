"""The service's `custom` domain: the function named at start (`serve-verifier --custom`), never one named in a request."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from verifiers.client import RemoteVerifier
from verifiers.service import ServiceSettings, create_app

REWARD = '''
def judge(response, reference, problem):
    if reference is None:
        return None
    return {"score": float(response.strip().endswith(str(reference))), "answer": response.split()[-1]}
'''


@pytest.fixture()
def spec(tmp_path) -> str:
    path = tmp_path / "reward.py"
    path.write_text(REWARD)
    return f"{path}:judge"


def test_custom_items_are_judged_by_the_function_loaded_at_start(spec, tmp_path):
    evil = tmp_path / "evil.py"
    evil.write_text("raise SystemExit('imported!')\ndef f(*a):\n    return True\n")
    settings = ServiceSettings(domains=("custom",), verifier_options={"custom": {"spec": spec, "workers": 1}})
    with TestClient(create_app(settings)) as client:
        items = [{"domain": "custom", "id": 1, "response": "so 7", "reference": "7"},
                 {"domain": "custom", "id": 2, "response": "so 8", "reference": "7", "problem": {"level": 2}},
                 {"domain": "custom", "id": 3, "response": "so 8", "reference": None},
                 # a request cannot name code: an extra "spec" key is data for the function, never imported
                 {"domain": "custom", "id": 4, "response": "so 7", "reference": "7", "spec": f"{evil}:f"}]
        r = client.post("/v1/verify", json={"items": items})
        assert r.status_code == 200, r.text
        got = [(x["verdict"], x["reason"], x.get("answer")) for x in r.json()["results"]]
        assert got == [("pass", "correct", "7"), ("fail", "wrong_answer", "8"), ("error", "custom_returned_none", None),
                       ("pass", "correct", "7")]
        health = client.get("/healthz").json()
        assert "custom" in health["domains"]


def test_custom_domain_needs_its_function_at_start():
    with pytest.raises(ValueError, match="--custom MODULE:FUNCTION"):
        ServiceSettings(domains=("math", "custom"))


def test_remote_verifier_speaks_custom(spec, monkeypatch):
    v = RemoteVerifier("http://127.0.0.1:9", "custom")
    item = v.parse_item({"id": "a", "response": "x", "reference": 3, "problem": {"id": "a"}}, where="row 1")
    assert item["domain"] == "custom" and item["reference"] == 3
    v.close()


def test_serve_verifier_refuses_a_custom_function_it_cannot_load():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for args, says in ((["--custom", "nope_mod_xyz:f"], "cannot import module 'nope_mod_xyz'"),
                       (["--domains", "math,custom"], "domain custom needs --custom")):
        proc = subprocess.run([sys.executable, "-m", "rest_em.cli", "serve-verifier", "--port", "8799", *args], cwd=root,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and says in proc.stderr
