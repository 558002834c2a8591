"""``rest-em iterate``: run (or resume) ReST-EM iterations from a YAML config.

    rest-em iterate --config configs/default.yaml --iterations 3 sampling.n=16 run.name=trial

Re-running the same command after a crash or ``kill -9`` continues from the last finished stage.

``--seeds 3`` runs the same config three times, into sibling run directories ``<run.name>-seed0``,
``-seed1``, ``-seed2``: run ``s`` adds ``s`` to ``sampling.seed``, ``filter.seed`` and ``training.seed``
(sampling and training); the test problems (``task.*``) and the evaluation (``eval.seed``) stay the
same, so ``rest-em compare`` pairs the seeds problem by problem and pools them.
Exit status: 0 done, 2 a config error, 3 stopped by a verifier outage (more ``error`` verdicts than
``verifier.max_error_rate``; fix the cause named in the message and rerun the same command), 4 the
launched M-step job failed (its log tail is printed; rerun the same command to retry it).
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "iterate",
        help="run ReST-EM iterations (E-step, filter, M-step from the base model, evaluation)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", default=None, help="YAML run config (default: built-in defaults)")
    p.add_argument("--iterations", type=int, default=None, help="number of ReST-EM iterations (overrides `iterations`)")
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="run the config with N seeds (sampling, filter and training seeds + 0..N-1) into sibling run "
                        "directories <run.name>-seed<s>")
    p.add_argument("overrides", nargs="*", metavar="KEY.PATH=VALUE", help="config overrides, e.g. sampling.n=64")
    p.set_defaults(func=run, _positional_list="overrides")


def run(args: argparse.Namespace) -> int:
    import sys

    from rest_em.config import ConfigError, load_config

    overrides = list(args.overrides)
    if args.iterations is not None:
        overrides.append(f"iterations={args.iterations}")
    try:
        cfg = load_config(args.config, overrides)
        if args.seeds is not None and args.seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
        configs = [cfg] if args.seeds is None else [load_config(args.config, overrides + seed_overrides(cfg, s))
                                                    for s in range(args.seeds)]
    except ConfigError as exc:
        print(f"rest-em iterate: {exc}", file=sys.stderr)
        return 2
    for c in configs:
        status = _run_one(c)
        if status:
            return status
    return 0


def seed_overrides(cfg, s: int) -> list[str]:
    """The overrides of seed ``s`` of ``--seeds``: sampling, filter and training seeds moved by ``s``; its own run name."""
    return [f"sampling.seed={cfg.sampling.seed + s}", f"filter.seed={cfg.filter.seed + s}",
            f"training.seed={cfg.training.seed + s}", f"run.name={cfg.run.name}-seed{s}"]


def _run_one(cfg) -> int:
    import sys

    from rest_em.config import ConfigError
    from rest_em.loop import run as run_loop
    from rest_em.model_source import ModelNotFound
    from rest_em.training.launch import LaunchedUnderLauncher, TrainJobFailed
    from rest_em.verification import VerifierOutage

    try:
        report = run_loop(cfg)
    except (ConfigError, ModelNotFound, LaunchedUnderLauncher) as exc:  # e.g. resuming a run with a different config; no base model
        print(f"rest-em iterate: {exc}", file=sys.stderr)
        return 2
    except VerifierOutage as exc:  # our side broke: nothing was trained on the broken verdicts
        print(f"rest-em iterate: stopped: {exc}", file=sys.stderr)
        return 3
    except TrainJobFailed as exc:  # the launched M-step failed: its log tail is in the message; rerun resumes
        print(f"rest-em iterate: stopped: {exc}", file=sys.stderr)
        return 4
    print(f"report is at {report}")
    return 0
