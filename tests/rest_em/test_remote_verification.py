"""The run gives the same report with the in-process verifier and with `verifier.url` (the service):
verdicts and maj@k (which groups answers through ``equivalent_batch``) included; and
`verifier.math.response_format: answer` grades bare answers through the loop."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from rest_em import training
from rest_em.config import load_config
from rest_em.loop import run
from rest_em.sampling.params import Completion
from rest_em.tasks import load_task

REPO = Path(__file__).resolve().parents[2]


class FormsSampler:
    """Writes each problem's answer in forms that only an equivalence check groups: 44, 44.0, 88/2."""

    backend = "fake"

    def __init__(self, answers, bare=False):
        self.answers, self.bare = answers, bare

    def generate(self, prompts, params, desc=""):
        out = []
        for prompt in prompts:
            ref = int(next(a for q, a in self.answers.items() if q in prompt))
            forms = [f"{ref}.0", f"\\frac{{{2 * ref}}}{{2}}", str(ref + 1), str(ref + 1), str(ref)]
            texts = [f if self.bare else f"So the answer is \\boxed{{{f}}}." for f in forms]
            out.append([Completion(texts[i % len(texts)], "stop", 5) for i in range(params.n)])
        return out

    def close(self):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def service():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rest_em.cli", "serve-verifier", "--host", "127.0.0.1", "--port",
                             str(port), "--domains", "math", "--workers", "1"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the service exited early:\n{proc.stdout.read()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError("the service did not become healthy")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def run_once(tmp_path, tiny_model_dir, monkeypatch, name, *overrides, bare=False):
    cfg = load_config(REPO / "configs" / "default.yaml", [
        f"model.path={tiny_model_dir}", f"run.output_dir={tmp_path}", f"run.name={name}", "task.num_train=4",
        "task.num_test=4", "sampling.n=5", "eval.n=5", "eval.k_list=[1,5]", "eval.maj_k=5", "iterations=1",
        "verifier.workers=1", *overrides])
    answers = {p.question: p.payload["reference"] for p in (*load_task(cfg.task).train, *load_task(cfg.task).test)}
    monkeypatch.setattr("rest_em.sampling.make_sampler", lambda path, backend="auto", **kw: FormsSampler(answers, bare))

    def copy_train(base, examples, config, out):
        shutil.copytree(base, out)
        return training.TrainResult(out, 1, 0.5, 0.1, 100.0, len(examples))

    monkeypatch.setattr(training, "train", copy_train)
    run(cfg)
    return json.loads((cfg.run_dir() / "report.json").read_text()), cfg.run_dir()


def metrics_of(report):
    return [{k: v for k, v in (e["eval"] or {}).items() if "@" in k} for e in report["iterations"]]


def test_same_report_in_process_and_through_the_service(tmp_path, tiny_model_dir, monkeypatch, service):
    local, local_dir = run_once(tmp_path, tiny_model_dir, monkeypatch, "local")
    remote, remote_dir = run_once(tmp_path, tiny_model_dir, monkeypatch, "remote", f"verifier.url={service}",
                                  "verifier.workers=null")
    assert metrics_of(local) == metrics_of(remote)
    # 3 of 5 samples are right in three forms: maj@5 needs equivalence to make them one group.
    assert metrics_of(local)[0]["maj@5"] == 1.0 and metrics_of(local)[0]["pass@1"] == pytest.approx(0.6)
    for path in ("iter_01/verdicts.jsonl", "iter_00/eval/verdicts.jsonl"):
        a = [json.loads(line) for line in (local_dir / path).read_text().splitlines()]
        b = [json.loads(line) for line in (remote_dir / path).read_text().splitlines()]
        assert [(r["verdict"], r["reason"]) for r in a] == [(r["verdict"], r["reason"]) for r in b]


def test_bare_answers_are_graded_with_response_format_answer(tmp_path, tiny_model_dir, monkeypatch):
    text, _ = run_once(tmp_path, tiny_model_dir, monkeypatch, "text", bare=True)
    bare, run_dir = run_once(tmp_path, tiny_model_dir, monkeypatch, "bare", "verifier.math.response_format=answer",
                             bare=True)
    assert metrics_of(text)[0]["pass@1"] == 0.0  # no policy finds an answer in a bare "44.0"
    assert metrics_of(bare)[0]["pass@1"] == pytest.approx(0.6) and metrics_of(bare)[0]["maj@5"] == 1.0
    rows = [json.loads(line) for line in (run_dir / "iter_01" / "verdicts.jsonl").read_text().splitlines()]
    assert {r.get("extracted_by") for r in rows} == {"whole_response"}  # every verdict says how it read the answer
