"""Can a live sampler switch to another checkpoint by loading its weights? (pure Python, no heavy imports)

A sampler keeps its engine (vLLM: worker processes, KV cache, tokenizer in the frontend) and only
replaces the weights, so the new checkpoint must have the same architecture, shapes and tokenizer as
the one the engine was built for. ReST-EM policies are fine-tunes of the base model, so they always do;
anything else is refused with the reason, and the caller builds a new sampler instead.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

# config.json keys that fix the module tree and tensor shapes (a differing value means new engine).
_SHAPE_KEYS = (
    "architectures", "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim", "tie_word_embeddings", "max_position_embeddings",
    "rope_theta", "rope_scaling", "rms_norm_eps", "hidden_act",
)
# Files whose bytes define the tokenizer and the prompt rendering.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt", "special_tokens_map.json")


def _config(path: Path) -> dict:
    try:
        return json.loads((path / "config.json").read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"not a checkpoint directory (no config.json): {path}") from None


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def switch_incompatibility(current: str | Path, new: str | Path) -> str | None:
    """None when ``new`` can be loaded into an engine built for ``current``, else the reason why not.

    Raises ``FileNotFoundError`` when ``new`` is not a checkpoint directory.
    """
    current, new = Path(current), Path(new)
    new_cfg = _config(new)
    cur_cfg = _config(current)
    for key in _SHAPE_KEYS:
        if cur_cfg.get(key) != new_cfg.get(key):
            return f"config.json {key} differs ({cur_cfg.get(key)!r} -> {new_cfg.get(key)!r})"
    for name in _TOKENIZER_FILES:
        if _digest(current / name) != _digest(new / name):
            return f"tokenizer file {name} differs"
    if not any(new.glob("*.safetensors")) and not any(new.glob("*.bin")):
        return f"no weight files (*.safetensors, *.bin) in {new}"
    return None
