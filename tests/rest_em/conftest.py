"""Shared fixtures for rest_em tests: a tiny Llama chat model built from scratch (no downloads).

``tiny_model_dir`` (session scope) is a Hugging Face checkpoint directory with:
- a byte-level BPE tokenizer trained here on a small corpus (``tokenizers``), wrapped as
  ``PreTrainedTokenizerFast`` with a ChatML chat template, ``eos_token="<|im_end|>"`` and a distinct
  ``pad_token="<|pad|>"`` (so padding and EOS handling are both exercised);
- a randomly initialised ``LlamaForCausalLM`` (2 layers, hidden 64, head_dim 32) saved as safetensors, float32;
- a ``generation_config.json`` carrying the eos / pad ids.

Building it takes well under a second. Tests must not modify it (copy it first if needed).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# As `rest-em` does (rest_em/cli.py): torch's spinning OpenMP threads are very slow on a busy 2-core box.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]

_CORPUS = [
    "What is 2 + 3? The answer is 5.",
    "Compute 12 * 7. We have 12 * 7 = 84, so the answer is \\boxed{84}.",
    "def add(a, b):\n    return a + b\n",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "The quick brown fox jumps over the lazy dog. #### 42",
    "Let x be a real number such that x^2 = 16. Then x = 4 or x = -4.",
    "print(sum(range(10)))",
    "Answer: 17\nAnswer: 23\nFinal answer: 100",
]


def build_tiny_chat_model(path: Path, *, vocab_size: int = 320, seed: int = 0, initializer_range: float = 0.2) -> Path:
    """Write a tiny random Llama chat model + trained byte-level tokenizer to ``path``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token=None,
        additional_special_tokens=["<|im_start|>", "<|endoftext|>"],
    )
    hf_tok.chat_template = CHAT_TEMPLATE
    hf_tok.save_pretrained(path)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(hf_tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        # head_dim 32: the smallest head size vLLM's CPU attention supports.
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        # Larger than the usual 0.02 so greedy outputs depend on the prompt instead of collapsing
        # to one repeated token (tests compare outputs across prompts).
        initializer_range=initializer_range,
        tie_word_embeddings=True,
        eos_token_id=hf_tok.eos_token_id,
        pad_token_id=hf_tok.pad_token_id,
        bos_token_id=None,
    )
    config.dtype = torch.float32
    model = LlamaForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=hf_tok.eos_token_id, pad_token_id=hf_tok.pad_token_id
    )
    model.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """Path (str) of a tiny random Llama chat model with its tokenizer; see module docstring."""
    # Tests run on a shared 2-core box: keep torch from oversubscribing.
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    return str(build_tiny_chat_model(tmp_path_factory.mktemp("tiny_model") / "model"))


@pytest.fixture(scope="session")
def chat_prompts(tiny_model_dir) -> list[str]:
    """A handful of chat-formatted prompts (generation prompt included) for the tiny model."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    questions = ["What is 2 + 3?", "Compute 12 * 7.", "Write add(a, b).", "Solve x^2 = 16 for x."]
    return [
        tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in questions
    ]


def save_in_hub_cache(model_dir: str | Path, hf_home: Path, repo_id: str, commit: str = "0" * 40) -> Path:
    """Copy ``model_dir`` into a Hugging Face hub cache under ``hf_home`` (``hub/models--owner--name``,
    ``refs/main``, ``snapshots/<commit>/``), as ``snapshot_download`` leaves it; returns the snapshot dir."""
    import shutil

    repo = Path(hf_home) / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    shutil.copytree(model_dir, snapshot, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture
def offline_hub(tmp_path, tiny_model_dir, monkeypatch):
    """HF_HOME in a tmp dir with the tiny model cached as ``rest-em-test/tiny-llama``; HF_HUB_OFFLINE=1."""
    hf_home = tmp_path / "hf_home"
    snapshot = save_in_hub_cache(tiny_model_dir, hf_home, "rest-em-test/tiny-llama")
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return {"repo_id": "rest-em-test/tiny-llama", "hf_home": hf_home, "snapshot": snapshot}
