"""GPU smoke check of the E-step and M-step paths, in a few minutes on one GPU, with nothing downloaded.

    python benchmarks/gpu_check.py [--out gpu_check.json] [--require-gpu] [--quick]

Builds a randomly initialised small Llama (about 40M parameters) and a byte-level BPE tokenizer from a
config, then runs, each part timed and checked on its own:

1. ``hf-sampler``: the transformers sampler (``rest_em.sampling.hf``) on CUDA, bfloat16;
2. ``m-step-plain``: the in-process M-step (``rest_em.training.train``), bf16 mixed precision, and that
   the memory it held is given back afterwards (``rest_em.training.memory``);
3. ``m-step-deepspeed``: the same through DeepSpeed ZeRO-2 (when ``deepspeed`` imports);
4. ``m-step-launched``: the M-step as a launched job (``training.launcher=torchrun``, one process per
   visible GPU), which must leave this process's GPU memory untouched;
5. ``vllm-sampler``: the vLLM sampler (when ``vllm`` imports).

Prints one line per part (PASS / FAIL / SKIP, tokens/s, peak GPU memory) and a JSON summary (also to
``--out``). Exit status 0 when no part failed; on a machine without CUDA it says so and exits 0 (1 with
``--require-gpu``). Runs in well under 8 minutes on one GPU (``--quick`` halves the work).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "What is 12 + 30? The answer is \\boxed{42}.",
    "def add(a, b):\n    return a + b\n",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "Let x be a real number such that x^2 = 16. Then x = 4 or x = -4.",
]


def build_model(path: Path, hidden: int = 512, layers: int = 8) -> Path:
    """A random Llama (``hidden`` x ``layers``) with a BPE tokenizer trained here; no download."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS * 8, trainer=trainers.BpeTrainer(
        vocab_size=1024, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|pad|>",
                                     additional_special_tokens=["<|im_start|>", "<|endoftext|>"])
    hf_tok.chat_template = CHAT_TEMPLATE
    hf_tok.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(hf_tok), hidden_size=hidden, intermediate_size=4 * hidden,
                         num_hidden_layers=layers, num_attention_heads=hidden // 64, num_key_value_heads=hidden // 128,
                         max_position_embeddings=2048, tie_word_embeddings=True, eos_token_id=hf_tok.eos_token_id,
                         pad_token_id=hf_tok.pad_token_id, bos_token_id=None)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=hf_tok.eos_token_id, pad_token_id=hf_tok.pad_token_id)
    model.save_pretrained(path, safe_serialization=True)
    return path


def prompts(model_dir: Path, count: int) -> list[str]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return [tok.apply_chat_template([{"role": "user", "content": f"What is {i} + {2 * i}? {CORPUS[i % 4]}"}],
                                    tokenize=False, add_generation_prompt=True) for i in range(count)]


def rows(model_dir: Path, count: int) -> list[dict]:
    return [{"prompt": p, "completion": f"The answer is \\boxed{{{3 * i}}}. " + CORPUS[i % 4], "problem_id": f"p{i}"}
            for i, p in enumerate(prompts(model_dir, count))]


class Parts:
    def __init__(self) -> None:
        self.results: list[dict] = []

    def run(self, name: str, fn) -> None:
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        entry: dict = {"part": name}
        try:
            out = fn()
            if out is None:
                raise AssertionError("no result")
            if isinstance(out, str):  # a reason to skip
                entry.update(status="SKIP", reason=out)
            else:
                entry.update(status="PASS", **out)
        except Exception as exc:
            entry.update(status="FAIL", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=6))
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        entry["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        self.results.append(entry)
        rate = f"{entry['tokens_per_s']:.0f} tok/s" if entry.get("tokens_per_s") else ""
        extra = entry.get("reason") or entry.get("error") or ""
        print(f"{entry['status']:4}  {name:18} {entry['seconds']:6.1f} s  peak {entry['peak_gib']:.2f} GiB  {rate}  {extra}",
              flush=True)


def check_hf_sampler(model_dir: Path, n_prompts: int) -> dict:
    from rest_em.sampling import SampleParams
    from rest_em.sampling.hf import HFSampler

    sampler = HFSampler(str(model_dir), dtype="bfloat16", batch_size=64)
    assert sampler.device == "cuda", sampler.device
    params = SampleParams(n=4, temperature=0.7, top_k=40, max_tokens=128, seed=0)
    t0 = time.perf_counter()
    out = sampler.generate(prompts(model_dir, n_prompts), params, desc="gpu_check hf")
    seconds = time.perf_counter() - t0
    sampler.close()
    assert len(out) == n_prompts and all(len(c) == 4 for c in out)
    tokens = sum(c.num_tokens for cs in out for c in cs)
    return {"tokens": tokens, "tokens_per_s": tokens / seconds}


def check_m_step(model_dir: Path, work: Path, n_rows: int, backend: str) -> dict | str:
    import torch

    from rest_em.mstep import SFTTrainer
    from rest_em.training import TrainConfig

    if backend == "deepspeed":
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            return "deepspeed is not installed"
    config = TrainConfig(backend=backend, zero_stage=2, learning_rate=1e-4, num_epochs=1, per_device_batch_size=16,
                         max_seq_len=256, dtype="bfloat16", seed=0)
    result = SFTTrainer(config).train(model_dir, rows(model_dir, n_rows), work / f"ckpt-{backend}")
    assert result.train_loss is not None and result.train_loss == result.train_loss  # not NaN
    assert (Path(result.checkpoint_dir) / "model.safetensors").exists()
    peak = torch.cuda.max_memory_allocated() / 2**30
    left = torch.cuda.memory_allocated() / 2**30
    assert left < 0.25 * max(peak, 1e-9) + 0.05, f"{left:.2f} GiB still allocated after the M-step (peak {peak:.2f})"
    return {"steps": result.steps, "train_loss": round(result.train_loss, 4), "tokens_per_s": result.tokens_per_s,
            "allocated_after_gib": round(left, 3), "reserved_after_gib": round(torch.cuda.memory_reserved() / 2**30, 3)}


def check_launched(model_dir: Path, work: Path, n_rows: int) -> dict:
    import torch

    from rest_em.training import TrainConfig
    from rest_em.training.launch import LaunchedTrainer

    gpus = torch.cuda.device_count()
    config = TrainConfig(backend="plain", learning_rate=1e-4, num_epochs=1, per_device_batch_size=16, max_seq_len=256,
                         dtype="bfloat16", launcher="torchrun", num_processes=gpus)
    before = torch.cuda.memory_allocated()
    result = LaunchedTrainer(config).train(model_dir, rows(model_dir, n_rows), work / "iter_01" / "checkpoint")
    assert torch.cuda.memory_allocated() == before  # the job's memory went with its processes
    return {"processes": gpus, "steps": result.steps, "tokens_per_s": result.tokens_per_s, "seconds_job": result.seconds}


def check_vllm(model_dir: Path, n_prompts: int) -> dict | str:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return "vllm is not installed"
    from rest_em.sampling import SampleParams
    from rest_em.sampling.vllm_backend import VLLMSampler

    sampler = VLLMSampler(str(model_dir), dtype="bfloat16", gpu_memory_utilization=0.5, max_model_len=1024)
    params = SampleParams(n=4, temperature=0.7, top_k=40, max_tokens=128, seed=0)
    t0 = time.perf_counter()
    out = sampler.generate(prompts(model_dir, n_prompts), params, desc="gpu_check vllm")
    seconds = time.perf_counter() - t0
    sampler.close()
    assert len(out) == n_prompts and all(len(c) == 4 for c in out)
    tokens = sum(c.num_tokens for cs in out for c in cs)
    return {"tokens": tokens, "tokens_per_s": tokens / seconds, "engine_start_s": round(sampler.start_seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="also write the JSON summary here")
    ap.add_argument("--require-gpu", action="store_true", help="exit 1 (not 0) when there is no CUDA device")
    ap.add_argument("--quick", action="store_true", help="half the prompts and training rows")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("gpu_check: torch is not installed; nothing was run (pip install -e '.[train]')")
        return 1 if args.require_gpu else 0
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False); nothing was run. "
              "Run it on a machine with a GPU.")
        return 1 if args.require_gpu else 0
    scale = 1 if args.quick else 2
    print(f"gpu_check: {torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}, torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}", flush=True)
    parts = Parts()
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        model_dir = build_model(work / "model")
        print(f"built a random Llama in {time.perf_counter() - t0:.1f} s: {model_dir}", flush=True)
        parts.run("hf-sampler", lambda: check_hf_sampler(model_dir, 64 * scale))
        parts.run("m-step-plain", lambda: check_m_step(model_dir, work, 256 * scale, "plain"))
        parts.run("m-step-deepspeed", lambda: check_m_step(model_dir, work, 256 * scale, "deepspeed"))
        parts.run("m-step-launched", lambda: check_launched(model_dir, work, 256 * scale))
        parts.run("vllm-sampler", lambda: check_vllm(model_dir, 64 * scale))
    summary = {"device": torch.cuda.get_device_name(0), "parts": parts.results}
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1))
    failed = [r["part"] for r in parts.results if r["status"] == "FAIL"]
    print(f"gpu_check: {'FAILED: ' + ', '.join(failed) if failed else 'all parts passed or skipped'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
