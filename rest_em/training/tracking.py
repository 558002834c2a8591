"""Training curves and per-iteration metrics in one tracker per run (``training.report_to``).

    report_to = resolve_report_to(config.report_to)          # "tensorboard" | "wandb" | "none"
    logging_dir = tb_dir(output_dir)                         # runs/<name>/tb/iter_01-checkpoint
    log_metrics(run_root, {"eval/greedy_pass@1": 41.7}, step=iteration, report_to=...)

Every trainer hands ``report_to`` and ``logging_dir`` to its Hugging Face / TRL arguments, so the M-step
loss lands in ``runs/<name>/tb/<iter>-<stage>/``; :func:`log_metrics` writes the evaluation metrics of an
iteration (step = the iteration) into ``runs/<name>/tb/metrics/``. ``tensorboard --logdir runs/<name>/tb``
shows both. With ``wandb``, runs take the run's name and group, and the metrics go to the same project.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from pathlib import Path
from typing import Mapping

logger = logging.getLogger(__name__)

_ITER_DIR = re.compile(r"^iter_\d+$")


def tensorboard_installed() -> bool:
    return importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None


def resolve_report_to(setting: str) -> str:
    """``auto`` -> ``tensorboard`` when installed, else ``none``; an explicit tracker must be installed."""
    if setting == "auto":
        return "tensorboard" if tensorboard_installed() else "none"
    if setting == "tensorboard" and not tensorboard_installed():
        raise ImportError("training.report_to=tensorboard but neither tensorboard nor tensorboardX is installed "
                          "(pip install tensorboard, or set training.report_to=none)")
    if setting == "wandb" and importlib.util.find_spec("wandb") is None:
        raise ImportError("training.report_to=wandb but wandb is not installed (pip install wandb)")
    return setting


def run_root_of(output_dir: Path) -> Path:
    """The run directory of a stage's output folder (``runs/<name>/iter_NN/checkpoint`` -> ``runs/<name>``);
    outside a run directory, the folder's parent."""
    out = Path(output_dir)
    return out.parent.parent if _ITER_DIR.match(out.parent.name) else out.parent


def tb_dir(output_dir: Path) -> Path:
    """The tracker folder of the training that writes ``output_dir``: ``<run>/tb/<iter_NN>-<folder name>``."""
    out = Path(output_dir)
    name = f"{out.parent.name}-{out.name}" if _ITER_DIR.match(out.parent.name) else out.name
    return run_root_of(out) / "tb" / name


def trainer_tracking_args(setting: str, output_dir: Path, args_cls=None) -> dict:
    """``report_to`` (and ``logging_dir`` where ``args_cls``, a ``TrainingArguments`` class, still has it) for
    the Trainer's arguments and TRL's configs. transformers 5 reads the TensorBoard folder from
    ``$TENSORBOARD_LOGGING_DIR`` when the Trainer is built, so that is set here too (for this process)."""
    import os

    report_to = resolve_report_to(setting)
    if report_to == "none":
        return {"report_to": "none"}
    logdir = tb_dir(output_dir)
    logdir.mkdir(parents=True, exist_ok=True)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(logdir)
    os.environ.setdefault("WANDB_PROJECT", "rest-em")
    kwargs: dict = {"report_to": [report_to], "run_name": f"{run_root_of(output_dir).name}/{logdir.name}"}
    if args_cls is not None:
        import dataclasses

        if "logging_dir" in {f.name for f in dataclasses.fields(args_cls)}:
            kwargs["logging_dir"] = str(logdir)
    return kwargs


def log_metrics(run_root: Path, metrics: Mapping[str, float | int | None], step: int, report_to: str = "auto") -> None:
    """Write ``metrics`` (numbers; ``None`` values skipped) at ``step`` (the iteration) into the run's tracker."""
    report_to = resolve_report_to(report_to)
    values = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if report_to == "none" or not values:
        return
    if report_to == "tensorboard":
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # pragma: no cover - torch without tensorboard support
            from tensorboardX import SummaryWriter
        writer = SummaryWriter(log_dir=str(Path(run_root) / "tb" / "metrics"))
        try:
            for key, value in values.items():
                writer.add_scalar(key, value, global_step=step)
        finally:
            writer.close()
        return
    import wandb

    run = wandb.run or wandb.init(project="rest-em", name=f"{Path(run_root).name}/metrics", group=Path(run_root).name,
                                  dir=str(Path(run_root) / "tb"), reinit=True)
    run.log({**values, "iteration": step}, step=step)


def log_eval_metrics(run_root: Path, iteration: int, set_name: str, metrics: Mapping, report_to: str = "auto") -> None:
    """The numeric top-level entries of an evaluation's ``metrics.json`` as ``<set_name>/<key>`` at ``iteration``
    (e.g. ``eval/greedy_pass@1``); the loop calls this after each evaluation."""
    flat = {f"{set_name}/{k}": v for k, v in metrics.items()
            if k != "iteration" and isinstance(v, (int, float)) and not isinstance(v, bool)}
    log_metrics(run_root, flat, iteration, report_to)
