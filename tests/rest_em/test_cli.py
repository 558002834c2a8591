"""The command line: a command's positional list (config overrides, run directories) may be interleaved with
its options, as users type them; anything else unrecognized is still an error."""

from __future__ import annotations

import pytest

from rest_em.cli import build_parser, parse


def test_overrides_after_options_are_kept_in_order():
    args = parse(build_parser(), ["iterate", "--config", "c.yaml", "run.output_dir=r", "--iterations", "3",
                                  "--seeds", "3", "algorithm=sft", "run.name=sft"])
    assert args.config == "c.yaml" and args.iterations == 3 and args.seeds == 3
    assert args.overrides == ["run.output_dir=r", "algorithm=sft", "run.name=sft"]


def test_run_dirs_after_options_are_kept():
    args = parse(build_parser(), ["compare", "runs/a", "-o", "out.md", "runs/b"])
    assert args.run_dirs == ["runs/a", "runs/b"]


@pytest.mark.parametrize("argv", [
    ["iterate", "a=1", "--no-such-flag"],  # an unknown option stays an error
    ["report", "runs/a", "runs/b"],  # a command without a positional list takes no extra arguments
])
def test_unknown_arguments_are_still_refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parse(build_parser(), argv)
    assert exc.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err
