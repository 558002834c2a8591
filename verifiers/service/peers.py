"""The peers' own protocols: OpenRLHF's remote reward (``POST /get_reward``) and SandboxFusion's
``POST /run_code`` (the part veRL's ``sandbox_fusion`` reward and the ``sandbox-fusion`` client use).

Wire shapes follow the peers' source:

* OpenRLHF (``openrlhf/utils/agent.py`` since 0.9.1, one query per request; ``remote_rm_utils.py`` up to 0.9.0) posts
  ``{"query": [...], "prompts": [...], "labels": [...]}`` with ``aiohttp``/``requests``, a 180 s timeout,
  and retries any non-2xx answer or connection error 5 times, 1 s apart. It reads ``rewards``,
  ``scores`` (falling back to ``rewards``) and ``extra_logs`` (each value logged per sample).
* SandboxFusion (``sandbox/server/sandbox_api.py``): ``RunCodeRequest`` / ``RunCodeResponse`` with
  ``RunStatus`` (Success, Failed, SandboxError) and ``CommandRunResult`` (Finished, Error,
  TimeLimitExceeded). A language outside its ``Language`` literal gets FastAPI's 422 ``{"detail": [...]}``;
  here ``python`` is the only language, so every other one gets exactly that answer.

A ``/get_reward`` batch whose share of ``error`` verdicts is over ``RewardSettings.max_error_rate``
gets a 503 (OpenRLHF retries it); under the limit an error is scored ``error_score`` and counted in
``extra_logs["verifier_error"]``. OpenRLHF has no "no reward" value, so an error never becomes a
silent 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from verifiers.labels import LabelError, item_from_label, response_from_query, strip_end_tokens
from verifiers.service.models import ItemError, VerifyResult
from verifiers.verdict import Outcome


@dataclass(frozen=True)
class RewardSettings:
    """How ``/get_reward`` scores verdicts and when it refuses a batch."""

    # Largest share of `error` verdicts a batch may have and still be answered; above it: 503.
    # 0.0 (the default): any error is refused, so OpenRLHF retries and never trains on a made-up reward.
    max_error_rate: float = 0.0
    # The reward (and score) of an `error` item in a batch under the limit; counted in extra_logs.
    error_score: float = 0.0
    pass_score: float = 1.0
    fail_score: float = 0.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.max_error_rate <= 1.0):
            raise ValueError(f"reward max_error_rate must be within [0, 1], got {self.max_error_rate!r}")
        for name in ("error_score", "pass_score", "fail_score"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"reward {name} must be a finite number, got {value!r}")

    def reward(self, outcome: Outcome) -> float:
        return {Outcome.PASS: self.pass_score, Outcome.FAIL: self.fail_score}.get(outcome, self.error_score)


# ----------------------------------------------------------------------------------- /get_reward

class RewardRequest(BaseModel):
    """OpenRLHF's remote reward request; extra keys (a later OpenRLHF's) are ignored."""

    model_config = ConfigDict(extra="ignore")

    query: list[StrictStr] = Field(description="Prompt and response, decoded (OpenRLHF: skip_special_tokens=False).")
    prompts: Optional[list[Optional[StrictStr]]] = Field(
        default=None, description="The prompt of each query; the response is the query after it.")
    labels: Optional[list[Any]] = Field(
        default=None, description="The reference of each query: a math answer, or a JSON object with domain, "
        "reference and, for code, tests (docs/service.md).")


class RewardVerdict(BaseModel):
    verdict: Outcome
    reason: str
    message: str = ""


class RewardResponse(BaseModel):
    rewards: list[float] = Field(description="One per query: 1.0 pass, 0.0 fail, error_score for an error.")
    scores: list[float] = Field(description="The same values (OpenRLHF uses them for dynamic filtering).")
    extra_logs: dict[str, list[float]] = Field(
        description="Per query: verifier_pass (1/0) and verifier_error (1 for an error verdict).")
    verdicts: list[RewardVerdict] = Field(description="The verdict behind each reward (OpenRLHF ignores it).")
    elapsed_s: float


def reward_rows(body: RewardRequest) -> tuple[list[dict[str, Any]], list[ItemError]]:
    """``/v1/verify`` items for the queries, and an error per query that cannot become one."""
    n = len(body.query)
    errors: list[ItemError] = []
    for name in ("prompts", "labels"):
        values = getattr(body, name)
        if values is not None and len(values) != n:
            errors.append(ItemError(index=0, field=name, message=f"{len(values)} {name} for {n} queries"))
    if body.labels is None and n:
        errors.append(ItemError(index=0, field="labels", message="labels are needed: each carries the reference"))
    if errors:
        return [], errors
    rows: list[dict[str, Any]] = []
    for i, query in enumerate(body.query):
        prompt = body.prompts[i] if body.prompts is not None else None
        response = response_from_query(query, prompt)
        if response is None:
            errors.append(ItemError(index=i, id=i, field="prompts",
                                    message="the prompt is not part of the query, so the response cannot be cut out"))
            continue
        try:
            assert body.labels is not None
            rows.append(item_from_label(body.labels[i], strip_end_tokens(response), item_id=i))
        except LabelError as exc:
            errors.append(ItemError(index=i, id=i, field="labels", message=str(exc)))
    return rows, errors


def error_rate_refusal(results: list[VerifyResult], settings: RewardSettings) -> tuple[str, list[ItemError]] | None:
    """A message and the erroring items when the batch's error share is over the limit, else None."""
    bad = [(i, r) for i, r in enumerate(results) if r.verdict is Outcome.ERROR]
    if not bad or len(bad) / len(results) <= settings.max_error_rate:
        return None
    i, first = bad[0]
    message = (f"{len(bad)} of {len(results)} items got an `error` verdict (our side broke, not the model), over the "
               f"limit reward_max_error_rate={settings.max_error_rate}; first: query[{i}]: {first.reason}: "
               f"{first.message[:300]}")
    return message, [ItemError(index=j, id=j, field="verdict", message=f"{r.reason}: {r.message[:300]}")
                     for j, r in bad[:50]]


def reward_response(results: list[VerifyResult], settings: RewardSettings, elapsed_s: float) -> RewardResponse:
    rewards = [float(settings.reward(r.verdict)) for r in results]
    return RewardResponse(
        rewards=rewards,
        scores=list(rewards),
        extra_logs={"verifier_pass": [1.0 if r.verdict is Outcome.PASS else 0.0 for r in results],
                    "verifier_error": [1.0 if r.verdict is Outcome.ERROR else 0.0 for r in results]},
        verdicts=[RewardVerdict(verdict=r.verdict, reason=r.reason, message=r.message[:500]) for r in results],
        elapsed_s=elapsed_s,
    )


# ------------------------------------------------------------------------------------- /run_code

class RunStatus(str, Enum):
    Success = "Success"        # every command finished with return code 0
    Failed = "Failed"          # a non-zero return code or a time limit
    SandboxError = "SandboxError"  # our side broke


class CommandRunStatus(str, Enum):
    Finished = "Finished"
    Error = "Error"
    TimeLimitExceeded = "TimeLimitExceeded"


class CommandRunResult(BaseModel):
    status: CommandRunStatus
    execution_time: Optional[float] = None
    return_code: Optional[int] = None
    stdout: Optional[str] = None
    stderr: Optional[str] = None


class RunCodeRequest(BaseModel):
    """SandboxFusion's ``RunCodeRequest``; ``python`` is the one language (Python 3 in the sandbox image)."""

    compile_timeout: float = Field(10, description="compile timeout for compiled languages (unused for python)")
    run_timeout: float = Field(10, description="code run timeout, seconds; capped by the code verifier's "
                               "timeout_per_problem_s; <= 0 means the code verifier's timeout_per_test_s")
    memory_limit_MB: int = Field(-1, description="maximum memory in MB; -1 or more than the code verifier's "
                                 "memory_mb means memory_mb")
    code: StrictStr = Field(..., examples=['print("hello")'], description="the code to run")
    stdin: Optional[StrictStr] = Field(None, examples=[""], description="optional string to pass into stdin")
    language: Literal["python"] = Field(..., examples=["python"], description="the language: python (Python 3)")
    files: dict[str, Optional[str]] = Field({}, description="not supported: must be empty")
    fetch_files: list[str] = Field([], description="not supported: must be empty")


class RunCodeResponse(BaseModel):
    status: RunStatus
    message: str
    compile_result: Optional[CommandRunResult] = None
    run_result: Optional[CommandRunResult] = None
    executor_pod_name: Optional[str] = None
    files: dict[str, str] = {}


def unsupported_run_fields(body: RunCodeRequest) -> str | None:
    """Why the request asks for what this sandbox does not do (None when it does not)."""
    if body.files:
        return (f"'files' is not supported by this sandbox (got {len(body.files)}): it runs one Python program "
                "with stdin; put the data in stdin or in the code")
    if body.fetch_files:
        return "'fetch_files' is not supported by this sandbox: print what you need to stdout"
    return None


def run_code_response(result: dict[str, Any]) -> RunCodeResponse:
    """SandboxFusion's answer for one ``CodeVerifier.run_program`` result."""
    status = result["status"]
    if status in ("sandbox_error", "sandbox_unavailable"):
        return RunCodeResponse(status=RunStatus.SandboxError, message=f"{status}: {result.get('message', '')}")
    stderr = result.get("stderr") or ""
    note = {"memory": "memory limit exceeded", "output_limit": "output limit exceeded (stdout truncated)"}.get(status)
    if note and note not in stderr:
        stderr = (stderr + ("\n" if stderr else "") + f"[sandbox] {note}")
    if status == "timeout":
        run = CommandRunResult(status=CommandRunStatus.TimeLimitExceeded, execution_time=result.get("elapsed_s"),
                               return_code=None, stdout=result.get("stdout", ""), stderr=stderr)
        return RunCodeResponse(status=RunStatus.Failed, message="", run_result=run)
    code = result.get("exit")
    if code is None:
        code = -int(result.get("signal") or 9)
    if status == "ok":
        code = 0 if code is None else code
    run = CommandRunResult(status=CommandRunStatus.Finished, execution_time=result.get("elapsed_s"),
                           return_code=code, stdout=result.get("stdout", ""), stderr=stderr)
    return RunCodeResponse(status=RunStatus.Success if status == "ok" and code == 0 else RunStatus.Failed,
                           message="", run_result=run)
