"""The base model as a local directory, whether the config names a directory or a hub id.

    path = resolve_model("Qwen/Qwen2.5-1.5B")      # -> ~/.cache/huggingface/hub/models--Qwen--Qwen2.5-1.5B/snapshots/<rev>
    path = resolve_model("/models/my-model")       # a directory: returned as is

A hub id is resolved once per process through ``huggingface_hub.snapshot_download``: the local cache
first (``local_files_only=True``, no network), then a download when the hub may be used. Offline
(``HF_HUB_OFFLINE=1``) with no cached copy, or with the hub unreachable, it raises
:class:`ModelNotFound` with what to do, before any stage starts. Every stage (sampling, prompts, the
M-step's trainer, a launched training job) gets the same snapshot directory, so nothing downstream
needs to know about the hub.

The cache is the Hugging Face one: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
``~/.cache/huggingface/hub`` (read when called, so a test or a job can point it elsewhere).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

logger = logging.getLogger(__name__)

# owner/name, as the hub spells repository ids (no leading "/", "~" or ".").
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TRUE = {"1", "true", "yes", "on"}
_resolved: dict[tuple[str, str], Path] = {}


class ModelNotFound(FileNotFoundError):
    """The configured base model is neither a local directory nor obtainable from the hub."""


def is_hub_id(spec: str) -> bool:
    return bool(_HUB_ID.match(spec)) and not Path(spec).expanduser().exists()


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    return Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / "hub"


def resolve_model(spec: str) -> Path:
    """A local directory for ``spec`` (a directory, or a hub id ``owner/name``); see the module docstring."""
    local = Path(spec).expanduser()
    if local.is_dir():
        return local
    if not is_hub_id(spec):
        raise ModelNotFound(f"model.path {spec!r}: no such directory (and not a hub id of the form owner/name)")
    cache = hub_cache_dir()
    key = (spec, str(cache))
    if key not in _resolved:
        _resolved[key] = _snapshot(spec, cache)
    return _resolved[key]


def _snapshot(repo_id: str, cache: Path) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - comes with transformers
        raise ModelNotFound(f"model.path {repo_id!r} is a hub id, which needs the huggingface_hub package "
                            "(pip install huggingface_hub), or give a local directory") from None
    try:
        path = Path(snapshot_download(repo_id, cache_dir=str(cache), local_files_only=True))
        logger.info("base model %s: cached snapshot %s", repo_id, path)
        return path
    except LocalEntryNotFoundError:
        pass
    if hub_offline():
        raise ModelNotFound(
            f"model.path {repo_id!r}: offline (HF_HUB_OFFLINE=1) and no copy in the hub cache {cache}. Download it "
            f"where the hub is reachable (`huggingface-cli download {repo_id}` with the same HF_HOME), or set "
            "model.path to a local model directory") from None
    logger.info("base model %s: downloading into %s", repo_id, cache)
    try:
        path = Path(snapshot_download(repo_id, cache_dir=str(cache)))
    except Exception as exc:  # network down, no such repository, gated model without a token
        raise ModelNotFound(
            f"model.path {repo_id!r}: not in the hub cache {cache} and the download failed ({type(exc).__name__}: "
            f"{exc}). Check the id and the network (or HF_TOKEN for a gated model), or set model.path to a local "
            "model directory") from None
    logger.info("base model %s: snapshot %s", repo_id, path)
    return path
