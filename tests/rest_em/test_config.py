"""Config: YAML loading, dotted overrides, unknown keys with a hint, wrong types, saving."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rest_em.config import Config, ConfigError, config_differences, config_to_dict, dump_config, load_config

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_follow_the_paper():
    cfg = load_config(None)
    assert (cfg.sampling.n, cfg.sampling.temperature, cfg.sampling.top_k) == (32, 0.7, 40)
    assert cfg.filter.cap == 10
    assert (cfg.eval.temperature, cfg.eval.top_p, cfg.eval.greedy) == (1.0, 0.95, True)


def test_yaml_and_overrides(tmp_path):
    path = write(tmp_path, "run: {name: t1}\nsampling:\n  n: 8\n  stop: [\"\\n\\n\"]\ntraining:\n  learning_rate: 2e-5\n")
    cfg = load_config(path, ["sampling.n=64", "eval.n=8", "eval.k_list=[1,8]", "task.num_train=null", "run.name=2024"])
    assert cfg.run.name == "2024"  # a number typed for a string field stays the text typed
    assert cfg.sampling.n == 64
    assert cfg.sampling.stop == ["\n\n"]
    assert cfg.eval.k_list == [1, 8]
    assert cfg.task.num_train is None
    assert cfg.training.learning_rate == pytest.approx(2e-5)  # YAML 1.1 reads 2e-5 as a string


@pytest.mark.parametrize(
    "text, overrides, expected",
    [
        ("sampling:\n  temprature: 0.5\n", [], "unknown key 'sampling.temprature'; did you mean 'sampling.temperature'"),
        ("", ["filter.capp=3"], "did you mean 'filter.cap'"),
        ("samplng: {n: 3}\n", [], "did you mean 'sampling'"),
        ("sampling: {n: many}\n", [], "sampling.n must be int, got str 'many'"),
        ("", ["sampling.n=1.5"], "sampling.n must be int"),
        ("filter: {dedupe: 3}\n", [], "filter.dedupe must be bool"),
        ("model: {prompt_style: zero}\n", [], "model.prompt_style must be one of"),
        ("eval: {k_list: 4}\n", [], "eval.k_list must be a list"),
        ("eval: {k_list: [1, x]}\n", [], "eval.k_list[1] must be int"),
        ("training: {learning_rate: fast}\n", [], "training.learning_rate must be float"),
        ("sampling: 3\n", [], "sampling. must be a mapping"),
        ("", ["sampling.n"], "expected KEY.PATH=VALUE"),
    ],
)
def test_errors_name_the_key(tmp_path, text, overrides, expected):
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text), overrides)
    assert expected in str(exc.value)


def test_training_section_is_validated():
    with pytest.raises(ConfigError, match="training.backend"):
        load_config(None, ["training.backend=megatron"])


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["sampling.n=5", "task.levels=[1,2]"])
    text = dump_config(cfg, meta={"git_revision": "abc"})
    data = yaml.safe_load(text)
    assert data["meta"]["git_revision"] == "abc"
    data.pop("meta")
    again = load_config(write(tmp_path, yaml.safe_dump(data)))
    assert config_to_dict(again) == config_to_dict(cfg)
    assert config_differences(config_to_dict(cfg), config_to_dict(load_config(None))) == [
        "sampling.n: 5 -> 32", "task.levels: [1, 2] -> None"]


@pytest.mark.parametrize("name", ["default.yaml", "math.yaml"])
def test_shipped_configs_load(name):
    cfg = load_config(REPO / "configs" / name)
    assert isinstance(cfg, Config)
    assert cfg.eval.maj_k <= cfg.eval.n and max(cfg.eval.k_list) <= cfg.eval.n


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "run: [unclosed\n"))
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_overrides_set_one_key_of_a_mapping_with_its_value_type():
    cfg = load_config(None, ["algorithm=grpo", "grpo.partial_credit.wrong_answer=0.25", "grpo.trl_args.logging_steps=2"])
    assert cfg.grpo.partial_credit == {"wrong_answer": 0.25}
    assert cfg.grpo.trl_args == {"logging_steps": 2} and type(cfg.grpo.trl_args["logging_steps"]) is int
    with pytest.raises(ConfigError, match=r"grpo.partial_credit.wrong_answer must be float, got str"):
        load_config(None, ["grpo.partial_credit.wrong_answer=lots"])
