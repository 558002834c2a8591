"""The registry: every algorithm in one module, found by name; config sections, choices, warnings and report
sections come from the algorithm's class; adding one is one new file."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest
from test_algorithms import setup  # noqa: F401 - the fixture (fake sampler, verifier and trainer)

from rest_em import registry
from rest_em.algorithms.base import Algorithm
from rest_em.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
TOY = REPO / "tests" / "rest_em" / "plugins" / "toy_algorithm.py"
BUILTIN = ("dpo", "expert_iteration", "grpo", "hpt_gate", "rcrl", "rest_em")


def test_builtin_algorithms_are_found_by_name_without_a_list():
    found = registry.algorithms()
    assert set(BUILTIN) <= set(found)
    for name, cls in found.items():
        assert issubclass(cls, Algorithm) and cls.name == name
    with pytest.raises(ConfigError, match="algorithm must be one of .*'rest_em'.*got 'nope'"):
        load_config(None, ["algorithm=nope"])


def test_sections_come_from_the_algorithm_modules():
    cfg = load_config(None, ["dpo.beta=0.2", "hpt.threshold=0.5", "grpo.group_size=4"])
    assert cfg.dpo.beta == 0.2 and cfg.hpt.threshold == 0.5 and cfg.grpo.group_size == 4
    assert type(cfg.dpo).__module__ == "rest_em.algorithms.dpo"
    with pytest.raises(ConfigError, match="unknown key 'dpoo'; did you mean 'dpo'"):
        load_config(None, ["dpoo.beta=0.2"])
    with pytest.raises(ConfigError, match="unknown key 'dpo.bta'"):
        load_config(None, ["dpo.bta=0.2"])


def test_a_plugin_file_adds_an_algorithm_with_its_section():
    cfg = load_config(None, [f"plugins=[{TOY}]", "algorithm=toy_best_of", "toy_best_of.keep=2"])
    assert cfg.algorithm_class().__name__ == "ToyBestOf" and cfg.toy_best_of.keep == 2
    with pytest.raises(ConfigError, match="toy_best_of.keep must be >= 1"):
        load_config(None, [f"plugins=[{TOY}]", "algorithm=toy_best_of", "toy_best_of.keep=0"])
    with pytest.raises(ConfigError, match="no such file"):
        load_config(None, ["plugins=[tests/no_such_plugin.py]"])


def test_a_toy_algorithm_from_one_file_runs_through_iterate_and_compare(setup, tmp_path, capsys):  # noqa: F811
    from rest_em.cli import main

    overrides = [f"plugins=[{TOY}]", "toy_best_of.keep=1"]
    cfg, _, state = setup("toy_best_of", lambda m, j, i: i < 3, iterations=1, overrides=overrides, name="toy")
    argv = ["iterate", "--config", str(REPO / "configs" / "default.yaml"), "--iterations", "1",
            f"model.path={cfg.model.path}", f"run.output_dir={cfg.run.output_dir}", "run.name=toy",
            "task.num_train=6", "task.num_test=4", "sampling.n=4", "eval.n=2", "eval.k_list=[1,2]", "eval.maj_k=2",
            "algorithm=toy_best_of", *overrides]
    assert main(argv) == 0
    rows = [json.loads(line) for line in (cfg.run_dir() / "iter_01" / "train_set.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["sample_idx"] == 0 for r in rows)  # one per problem: keep = 1
    assert len(state["calls"]) == 1 and len(state["calls"][0]["examples"]) == 6
    report = (cfg.run_dir() / "report.md").read_text()
    assert "## Toy best-of" in report and "keep = 1, 2 report rows" in report
    assert main(["compare", str(cfg.run_dir()), str(cfg.run_dir()), "-o", str(tmp_path / "cmp" / "c.md")]) == 0
    assert "toy_best_of" in (tmp_path / "cmp" / "c.md").read_text()


# Every setting that an algorithm does not honour: (algorithm, override, what the load says).
IGNORED = [
    ("dpo", "training.launcher=torchrun", "error"),
    ("grpo", "training.launcher=torchrun", "error"),
    *[("dpo", f"training.{key}={value}", "warn") for key, value in [
        ("backend", "deepspeed"), ("deepspeed_config", "x.json"), ("zero_stage", 3), ("early_stopping", "true"),
        ("val_fraction", 0.2), ("early_stopping_patience", 3), ("evals_per_epoch", 2), ("hostfile", "h"),
        ("master_addr", "1.2.3.4"), ("master_port", 1234), ("remote_shell", "rsh"), ("packing", "false"),
        ("supervised_logits_only", "false")]],
    *[("grpo", f"training.{key}={value}", "warn") for key, value in [
        ("backend", "deepspeed"), ("num_epochs", 3), ("per_device_batch_size", 4), ("gradient_accumulation_steps", 2),
        ("max_seq_len", 100), ("early_stopping", "true"), ("packing", "false"), ("supervised_logits_only", "false")]],
    *[("grpo", f"filter.{key}={value}", "warn") for key, value in [("cap", 2), ("dedupe", "false"), ("seed", 3),
                                                                  ("accumulate", "true")]],
    ("grpo", "sampling.n=16", "warn"),
    ("grpo", "mstep.init=previous", "warn"),
    ("grpo", "iterations=5", "warn"),
    ("rcrl", "filter.cap=2", "warn"),
    ("rest_em", "dpo.beta=0.3", "warn"),
    ("dpo", "grpo.beta=0.1", "warn"),
]


@pytest.mark.parametrize("algorithm,override,outcome", IGNORED)
def test_every_ignored_setting_is_named_at_load(algorithm, override, outcome):
    key = override.split("=")[0]
    if outcome == "error":
        with pytest.raises(ConfigError, match=f"algorithm {algorithm} trains in the driver process"):
            load_config(None, [f"algorithm={algorithm}", override])
        return
    warnings = load_config(None, [f"algorithm={algorithm}", override]).warnings()
    section = key.split(".")[0]
    assert any(key in w or f"{section}.*" in w or re.search(rf"\b{section}\b \(", w) for w in warnings), warnings
    assert load_config(None, [f"algorithm={algorithm}"]).warnings() == []  # the default config warns of nothing


def test_one_warning_names_all_the_ignored_keys():
    cfg = load_config(None, ["algorithm=dpo", "dpo.init=base", "training.packing=false", "training.early_stopping=true",
                            "filter.cap=2"])
    lines = [w for w in cfg.warnings() if w.startswith("algorithm dpo does not read")]
    assert len(lines) == 1 and all(k in lines[0] for k in ("training.packing", "training.early_stopping", "filter.cap"))


def test_dpo_names_training_learning_rate_and_filter_cap_only_when_nothing_reads_them():
    def ignored(*overrides):
        cfg = load_config(None, ["algorithm=dpo", "training.learning_rate=3e-5", "filter.cap=2", *overrides])
        return " ".join(w for w in cfg.warnings() if w.startswith("algorithm dpo does not read"))

    plain = ignored("dpo.init=base", "dpo.learning_rate=1e-6")
    assert "training.learning_rate" in plain and "filter.cap" in plain
    assert "training.learning_rate" not in ignored("dpo.init=base", "dpo.learning_rate=null")
    sft_start = ignored("dpo.init=sft", "dpo.learning_rate=1e-6")  # the SFT start trains with both
    assert "training.learning_rate" not in sft_start and "filter.cap" not in sft_start


def test_rcrl_and_expert_iteration_train_under_the_launcher():
    from rest_em.algorithms.rcrl import RCRL, RCRLTrainer

    for algorithm in ("rcrl", "expert_iteration", "hpt_gate", "rest_em"):
        assert not registry.get(algorithm).trains_in_process
        load_config(None, [f"algorithm={algorithm}", "training.launcher=torchrun"])  # no error
    source = inspect.getsource(RCRLTrainer.train)
    assert "make_trainer" in source and RCRL.trains_in_process is False


def test_grpo_keys_that_moved_load_with_the_new_name():
    cfg = load_config(None, ["algorithm=grpo", "grpo.learning_rate=3e-5", "grpo.temperature=0.7",
                             "grpo.max_completion_length=48", "grpo.dtype=float32"])
    assert cfg.training.learning_rate == 3e-5 and cfg.sampling.temperature == 0.7 and cfg.sampling.max_tokens == 48
    assert cfg.model.dtype == "float32" and cfg.training.dtype == "float32"
    notes = cfg.warnings()
    assert any("grpo.learning_rate is now training.learning_rate" in n for n in notes)
    with pytest.raises(ConfigError, match="grpo.top_k was renamed to sampling.top_k, and both are set"):
        load_config(None, ["grpo.top_k=0", "sampling.top_k=40"])
    dumped = load_config(None, ["training.dtype=float32"])
    assert dumped.model.dtype == "float32" and any("training.dtype is now model.dtype" in n for n in dumped.warnings())


def test_the_hook_signatures_in_the_architecture_doc_match_the_code():
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = doc.split("<!-- hook signatures: checked by tests/rest_em/test_algorithm_registry.py -->", 1)[1].split("\n\n", 1)[0]
    shown = dict(re.findall(r"^\| `(\w+)` \| `([^`]+)` \|", table, flags=re.M))
    assert {"iterations", "check", "condition", "improve", "train_set", "own_rows", "init", "trainer",
            "report_section"} <= set(shown)
    for hook, signature in shown.items():
        fn = inspect.getattr_static(Algorithm, hook)
        fn = fn.__func__ if isinstance(fn, classmethod) else fn
        code = hook + str(inspect.signature(fn)).replace('"', "").replace("'", "")
        assert signature == code, f"docs/architecture.md shows {signature!r}, the code has {code!r}"


# Values a key's type alone does not give (a validated string): key -> a valid non-default value.
_VALID = {"training.backend": "deepspeed"}


def _other_value(cfg, key: str) -> tuple[str, object]:
    """(leaf key, a value other than its default) for ``key``; a whole section (``filter``) gives its first leaf."""
    import dataclasses
    import typing

    parent, value = None, cfg
    for part in key.split("."):
        parent, value = value, getattr(value, part)
    if dataclasses.is_dataclass(value):
        return _other_value(cfg, f"{key}.{dataclasses.fields(value)[0].name}")
    if key in _VALID:
        return key, _VALID[key]
    hint = typing.get_type_hints(type(parent))[key.split(".")[-1]]
    options = [hint, *typing.get_args(hint)]
    literals = [x for t in options if typing.get_origin(t) is typing.Literal for x in typing.get_args(t)]
    if literals:
        return key, next(x for x in literals if x != value)
    if isinstance(value, bool) or (value is None and bool in options):
        return key, "false" if value else "true"
    if isinstance(value, int) or (value is None and int in options):
        return key, (value or 1) + 1
    if isinstance(value, float) or (value is None and float in options):
        return key, value / 2 if value else 0.5
    if isinstance(value, str) or (value is None and str in options):
        return key, f"{value or ''}x"
    raise AssertionError(f"{key}: no other value for {value!r} ({hint}); add one to _VALID")


def _every_unused_key():
    return [(name, key) for name, cls in registry.algorithms().items()
            for key in cls.unused_settings(load_config(None, [f"algorithm={name}"]))]


@pytest.mark.parametrize("algorithm,key", _every_unused_key())
def test_every_key_an_algorithm_does_not_read_is_named_when_set(algorithm, key):
    """Exhaustive over each algorithm's own table (``unused_settings``): a value set away from its default is
    named in a load-time warning, or the config is refused at load with a message naming it."""
    leaf, value = _other_value(load_config(None, [f"algorithm={algorithm}"]), key)
    try:
        cfg = load_config(None, [f"algorithm={algorithm}", f"{leaf}={value}"])
    except ConfigError as exc:
        assert key.split(".")[-1] in str(exc), str(exc)
        return
    assert any(key in w for w in cfg.warnings()), (leaf, value, cfg.warnings())
