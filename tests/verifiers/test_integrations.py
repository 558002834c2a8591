"""The trainer adapters: ``trl_reward`` (TRL's reward-function contract) and veRL's ``compute_score``, in-process
and against a live service; and a real TRL ``GRPOTrainer`` running 2 steps on a tiny model with the adapter
pointed at a live service, where an item whose verdict is ``error`` reaches TRL as ``None``.

Run: .venv/bin/python -m pytest -q tests/verifiers/test_integrations.py
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
from test_service_support import LiveServer

from verifiers.integrations import verl
from verifiers.integrations.common import VerifierErrorRate
from verifiers.integrations.trl import TRLReward, completion_text, trl_reward
from verifiers.service import ServiceSettings, create_app

MATH_OPTIONS = {"workers": 1, "timeout_s": 5.0}
# A reference the math verifier cannot parse (a solution without a boxed answer): an `error` verdict.
BROKEN = json.dumps({"domain": "math", "reference": "a solution with no boxed answer", "reference_format": "math_solution"})


@pytest.fixture(scope="module")
def live_url():
    app = create_app(ServiceSettings(domains=("math",), verifier_options={"math": MATH_OPTIONS}))
    with LiveServer(app) as url:
        yield url


@pytest.fixture(params=["in_process", "service"])
def where(request, live_url):
    return None if request.param == "in_process" else live_url


def test_completion_text_reads_plain_and_conversational_completions():
    assert completion_text("x") == "x"
    assert completion_text([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]) == "ab"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "t"}]}]) == "t"
    with pytest.raises(TypeError):
        completion_text(3)


def test_trl_reward_scores_pass_fail_and_none_for_an_error(where):
    reward = trl_reward("math", url=where, verifier_options=None if where else MATH_OPTIONS)
    metrics = []
    try:
        out = reward(prompts=["p"] * 4,
                     completions=["\\boxed{4}", [{"role": "assistant", "content": "\\boxed{5}"}], "\\boxed{1}", "\\boxed{2}"],
                     label=["4", "4", BROKEN, "{not json"], completion_ids=[[1]] * 4, trainer_state=None,
                     log_metric=lambda name, value: metrics.append((name, value)))
    finally:
        reward.close()
    assert out == [1.0, 0.0, None, None]
    assert reward.last_verdicts[2].outcome == "error"  # the math verifier's own error (unparseable reference)
    assert reward.last_verdicts[3].reason == "invalid_label"
    assert metrics == [("rest_em/verifier_error_rate", 0.5)]
    assert reward.__name__ == "rest_em_math"


def test_trl_reward_reads_item_columns_when_there_is_no_label(where):
    reward = TRLReward("math", url=where, verifier_options=None if where else MATH_OPTIONS)
    try:
        assert reward(prompts=["p", "p"], completions=["#### 72", "#### 7"], reference=["#### 72", "#### 72"],
                      reference_format=["gsm8k", "gsm8k"]) == [1.0, 0.0]
        with pytest.raises(ValueError, match="no 'label' column"):
            reward(prompts=["p"], completions=["x"], answer=["1"])
    finally:
        reward.close()


def test_verl_compute_score_per_response_and_batch(where):
    options = {"url": where} if where else {"verifier_options": MATH_OPTIONS}
    assert verl.compute_score("openai/gsm8k", "so \\boxed{12}", "12", {}, **options) == {
        "score": 1.0, "verifier_pass": 1.0, "verifier_error": 0.0}
    got = verl.compute_score(data_sources=["a", "b", "c"], solution_strs=["\\boxed{1}", "\\boxed{2}", "x"],
                             ground_truths=["1", "3", "5"], extra_infos=[{}, {}, {"label": "x"}], **options)
    assert [g["score"] for g in got] == [1.0, 0.0, 0.0]
    with pytest.raises(VerifierErrorRate, match="over max_error_rate=0.0"):
        verl.compute_score("x", "\\boxed{1}", BROKEN, None, **options)
    # Under a higher limit the error is scored error_score and counted.
    got = verl.compute_score(data_sources=["a"] * 4, solution_strs=["\\boxed{1}"] * 4,
                             ground_truths=["1", "1", "1", BROKEN], max_error_rate=0.25, error_score=-0.5, **options)
    assert [g["score"] for g in got] == [1.0, 1.0, 1.0, -0.5] and [g["verifier_error"] for g in got] == [0, 0, 0, 1]
    with pytest.raises(VerifierErrorRate):
        verl.compute_score(data_sources=["a"] * 2, solution_strs=["\\boxed{1}"] * 2, ground_truths=["1", BROKEN],
                           max_error_rate=0.25, **options)


def test_verl_module_loads_from_its_file_path_as_verl_does():
    """veRL's load_extern_object: spec_from_file_location on custom_reward_function.path, then getattr(name)."""
    spec = importlib.util.spec_from_file_location("custom_module", verl.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.compute_score)


# ------------------------------------------------------------------------------------ GRPOTrainer

def _tiny_model_builder():
    path = Path(__file__).resolve().parents[1] / "rest_em" / "conftest.py"
    spec = importlib.util.spec_from_file_location("rest_em_tests_conftest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_tiny_chat_model


class RecordingReward(TRLReward):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outputs: list[list] = []
        self.labels: list[list] = []

    def __call__(self, prompts, completions, **kwargs):
        out = super().__call__(prompts, completions, **kwargs)
        self.outputs.append(out)
        self.labels.append(list(kwargs["label"]))
        return out


@pytest.mark.slow
def test_grpo_trainer_runs_two_steps_with_the_adapter_on_a_live_service(live_url, tmp_path, monkeypatch):
    pytest.importorskip("trl")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    model_dir = _tiny_model_builder()(tmp_path / "model")
    rows = [{"prompt": "What is 2 + 3?", "label": "5"}, {"prompt": "Compute 12 * 7.", "label": BROKEN},
            {"prompt": "What is 1 + 1?", "label": "2"}, {"prompt": "Compute 3 * 3.", "label": BROKEN}]
    reward = RecordingReward("math", url=live_url)
    args = GRPOConfig(output_dir=str(tmp_path / "out"), max_steps=2, num_generations=2, per_device_train_batch_size=4,
                      gradient_accumulation_steps=1, max_completion_length=4, learning_rate=1e-3, logging_steps=1,
                      save_strategy="no", report_to=[], seed=0, bf16=False, fp16=False, use_cpu=True,
                      model_init_kwargs={"dtype": "float32"}, dataloader_num_workers=0, remove_unused_columns=False)
    trainer = GRPOTrainer(model=str(model_dir), reward_funcs=[reward], args=args, train_dataset=Dataset.from_list(rows))
    try:
        trainer.train()
    finally:
        reward.close()
    assert trainer.state.global_step == 2
    assert len(reward.outputs) >= 2
    for out, labels in zip(reward.outputs, reward.labels):
        assert len(out) == len(labels) == 4
        for value, label in zip(out, labels):
            if label == BROKEN:
                assert value is None  # the service's `error` verdict reached TRL as "no reward"
            else:
                assert value in (0.0, 1.0)
    assert any(v is None for out in reward.outputs for v in out)
    logged = [h["rest_em/verifier_error_rate"] for h in trainer.state.log_history if "rest_em/verifier_error_rate" in h]
    assert logged and all(0.0 < x <= 1.0 for x in logged)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses and all(math.isfinite(x) for x in losses)  # no NaN from the missing rewards
