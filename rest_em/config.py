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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from rest_em.training import TrainConfig

# "default" = the embedded model written by `rest-em setup-model`:
# $REST_EM_CACHE (else ~/.cache/rest-em) /models/smollm2-135m-instruct.
DEFAULT_MODEL_PATH = "default"


class ConfigError(ValueError):
    """A config file or override that does not fit the schema, with the key path and a hint."""


@dataclass
class RunSection:
    name: str = "default"
    output_dir: str = "runs"
    seed: int = 0


@dataclass
class ModelSection:
    # The base model: every M-step fine-tunes this one, never the previous iterate.
    path: str = DEFAULT_MODEL_PATH
    # auto = chat template when the tokenizer has one, else few-shot text (base models).
    prompt_style: Literal["auto", "chat", "fewshot"] = "auto"
    dtype: str = "auto"


@dataclass
class TransferSection:
    """A held-out set from another distribution, evaluated alongside (GSM8K test in the paper)."""

    name: str | None = None  # a task name (see rest_em.tasks.TASKS); None = no transfer set
    path: str | None = None  # local JSONL/parquet file; None = the task's default location
    hub_name: str | None = None  # Hugging Face dataset, tried first when set
    num_problems: int | None = None  # None = all


@dataclass
class TaskSection:
    name: str = "arithmetic"
    # Local files in the upstream field layout (JSONL or parquet); None = the task's default.
    train_path: str | None = None
    test_path: str | None = None
    # Hugging Face dataset name, tried before the local files when set (needs a reachable hub).
    hub_name: str | None = None
    num_train: int | None = 64  # None = all
    num_test: int | None = 64
    levels: list[int] | None = None  # keep only these difficulty levels; None = all
    # Relative weights of the levels for generated tasks (same length as levels); None = equal.
    level_weights: list[float] | None = None
    num_fewshot: int = 4  # examples in few-shot prompts (base models)
    seed: int = 0  # problem generation / subset selection
    transfer: TransferSection = field(default_factory=TransferSection)


@dataclass
class SamplingSection:
    """E-step sampling. Every engine parameter is set explicitly (engines change defaults)."""

    backend: Literal["auto", "vllm", "hf"] = "auto"
    n: int = 32
    temperature: float = 0.7
    top_k: int = 40
    top_p: float = 1.0
    max_tokens: int = 512
    seed: int = 0
    stop: list[str] = field(default_factory=list)
    batch_size: int = 64
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    enable_prefix_caching: bool = True
    gpu_memory_utilization: float = 0.9
    enforce_eager: bool = False
    max_model_len: int | None = None


@dataclass
class VerifierSection:
    url: str | None = None  # a running `rest-em serve-verifier`; None = verify in-process
    token_env: str | None = None  # name of the environment variable holding the service token
    timeout_s: float = 5.0
    workers: int | None = None  # verifier processes; None = one per core


@dataclass
class FilterSection:
    cap: int = 10  # most correct solutions kept per problem
    dedupe: bool = True  # drop identical solutions of the same problem before capping
    seed: int = 0


@dataclass
class EvalSection:
    greedy: bool = True  # greedy pass@1
    n: int = 4  # samples per problem for pass@k / maj@k (0 = none)
    temperature: float = 1.0
    top_p: float = 0.95
    top_k: int = 0  # 0 = no top-k cut (the paper samples with top-p only)
    k_list: list[int] = field(default_factory=lambda: [1, 4])
    maj_k: int = 4
    max_tokens: int = 512
    num_problems: int | None = None  # None = the whole test split
    seed: int = 1


@dataclass
class Config:
    run: RunSection = field(default_factory=RunSection)
    model: ModelSection = field(default_factory=ModelSection)
    task: TaskSection = field(default_factory=TaskSection)
    sampling: SamplingSection = field(default_factory=SamplingSection)
    verifier: VerifierSection = field(default_factory=VerifierSection)
    filter: FilterSection = field(default_factory=FilterSection)
    training: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalSection = field(default_factory=EvalSection)
    iterations: int = 3

    def run_dir(self) -> Path:
        return Path(self.run.output_dir).expanduser() / self.run.name

    def model_path(self) -> Path:
        if self.model.path == DEFAULT_MODEL_PATH:
            from rest_em.model_setup import default_model_dir

            return default_model_dir()
        return Path(self.model.path).expanduser()


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
        if isinstance(value, dict):
            return dict(value)
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
