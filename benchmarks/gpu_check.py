"""GPU check of the paths rest-em runs on a GPU, in under 8 minutes on one GPU, with nothing downloaded.

    python benchmarks/gpu_check.py [--out gpu_check.json] [--require-gpu]

Needs torch, transformers, accelerate and peft (vLLM and DeepSpeed are used when present). Builds two tiny
random models from configs, a Llama-shaped and a Qwen2-shaped one (biased q/k/v projections, untied head),
with a byte-level BPE tokenizer trained here, then checks, one PASS / FAIL / SKIP line each:

- ``packed-<shape>-<attn>``: a packed batch (rows concatenated, position ids restarting) against the padded
  batch on CUDA in bfloat16, sdpa and eager: the same loss and the same gradients;
- ``no-leak-<shape>``: in a packed batch, changing one example's tokens leaves the next example's logits as
  they were (no attention across a boundary);
- ``m-step-in-process``: ``rest_em.training`` in this process, then the device-level free memory
  (``torch.cuda.mem_get_info``, every process counted) back to >= 85% of the GPU;
- ``hf-sampler``: the transformers sampler: greedy output repeatable, stop strings cut where the text has
  them, the memory back after ``close``;
- ``launched-torchrun``, ``launched-accelerate``: the M-step as a launched job (one process), its weights
  against the in-process M-step's;
- ``iterate``: ``rest-em iterate`` for one iteration on a generated task (the loop's real sequence: engine,
  engine asleep or closed, trainer, engine awake with the checkpoint);
- ``checkpoint-round-trip``: a checkpoint saved, loaded and saved again gives the same tensors and tokens;
- ``vllm-sleep-wake-switch`` (with vLLM): sleep level 2 frees the device memory (checked against vLLM's
  own start gate, ``gpu_memory_utilization`` of the total free), wake with a new checkpoint samples what a
  fresh engine on it samples, level 1 keeps the weights, ``switch_model`` goes back.

What it cannot check: several GPUs (NCCL, tensor parallelism, replicas on separate GPUs, multi-node). On a
machine without CUDA every check prints SKIP and it exits 0 (1 with ``--require-gpu``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

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
SHAPES = ("llama", "qwen2")
CHECKS = [*(f"packed-{s}-{a}" for s in SHAPES for a in ("sdpa", "eager")), *(f"no-leak-{s}" for s in SHAPES),
          "m-step-in-process", "hf-sampler", "launched-torchrun", "launched-accelerate", "iterate",
          "checkpoint-round-trip", "vllm-sleep-wake-switch"]


def build_model(path: Path, shape: str = "llama", hidden: int = 256, layers: int = 4) -> Path:
    """A random ``shape`` model (``llama`` or ``qwen2``) with a BPE tokenizer trained here; no download."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

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
    common = dict(vocab_size=len(hf_tok), hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                  num_attention_heads=hidden // 64, num_key_value_heads=hidden // 128, max_position_embeddings=2048,
                  eos_token_id=hf_tok.eos_token_id, pad_token_id=hf_tok.pad_token_id, bos_token_id=None)
    if shape == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=True))
    else:  # Qwen2: biased q/k/v, untied LM head
        model = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=False))
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


GiB = 2**30


class Checks:
    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.results: list[dict] = []

    def run(self, name: str, fn) -> None:
        t0 = time.perf_counter()
        entry: dict = {"check": name}
        if not self.cuda:
            entry.update(status="SKIP", reason="no CUDA device")
        else:
            import torch

            torch.cuda.empty_cache()
            try:
                out = fn()
                if isinstance(out, str):  # a reason to skip
                    entry.update(status="SKIP", reason=out)
                else:
                    entry.update(status="PASS", **(out or {}))
            except Exception as exc:
                entry.update(status="FAIL", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=6))
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        self.results.append(entry)
        detail = entry.get("reason") or entry.get("error") or ", ".join(
            f"{k}={v}" for k, v in entry.items() if k not in ("check", "status", "seconds"))
        print(f"{entry['status']:4}  {name:26} {entry['seconds']:6.1f} s  {detail}", flush=True)


def free_fraction() -> float:
    import torch

    free, total = torch.cuda.mem_get_info()
    return free / total


# --------------------------------------------------------------------------- the checks


def check_packed(model_dir: Path, attn: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rest_em.training.sft import CompletionOnlyCollator, PackedCompletionCollator, tokenize_examples

    tok = AutoTokenizer.from_pretrained(model_dir)
    examples = [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows(model_dir, 6)]
    examples[2]["completion"] += " A longer completion, so that the padded rows differ in length." * 3
    feats, _ = tokenize_examples(tok, examples, 256, tok.eos_token_id)
    padded = {k: v.cuda() for k, v in CompletionOnlyCollator(tok.pad_token_id)(feats).items()}
    packed = {k: v.cuda() for k, v in PackedCompletionCollator()(feats).items()}

    def loss_and_grads(batch):
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, attn_implementation=attn).cuda()
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        grads = torch.cat([p.grad.float().flatten() for p in model.parameters() if p.grad is not None])
        return float(loss), grads

    a, ga = loss_and_grads(padded)
    b, gb = loss_and_grads(packed)
    cos = float(torch.nn.functional.cosine_similarity(ga, gb, dim=0))
    rel = abs(a - b) / abs(a)
    assert rel < 1e-2, f"loss padded {a:.5f} vs packed {b:.5f}"
    assert cos > 0.999, f"gradient cosine similarity {cos:.5f}"
    return {"loss_padded": round(a, 5), "loss_packed": round(b, 5), "grad_cosine": round(cos, 6)}


def check_no_leak(model_dir: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rest_em.training.sft import PackedCompletionCollator, tokenize_examples

    tok = AutoTokenizer.from_pretrained(model_dir)
    base = [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows(model_dir, 2)]
    other = [{"prompt": base[0]["prompt"].replace("What", "Which"), "completion": "Something else entirely."}, base[1]]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
    out = []
    for ex in (base, other):
        feats, _ = tokenize_examples(tok, ex, 256, tok.eos_token_id)
        batch = {k: v.cuda() for k, v in PackedCompletionCollator()(feats).items() if k != "labels"}
        with torch.no_grad():
            logits = model(**batch, use_cache=False).logits[0]
        out.append(logits[-len(feats[1]["input_ids"]):].float())
    diff = float((out[0] - out[1]).abs().max())
    assert diff < 1e-2, f"the second example's logits moved by {diff} when the first example changed"
    return {"max_logit_change": diff}


def m_step_config(**kw):
    from rest_em.training import TrainConfig

    return TrainConfig(**{"learning_rate": 1e-4, "num_epochs": 1, "per_device_batch_size": 8, "max_seq_len": 256,
                          "dtype": "bfloat16", "seed": 0, **kw})


def check_m_step_in_process(model_dir: Path, work: Path) -> dict:
    from rest_em.mstep import SFTTrainer

    result = SFTTrainer(m_step_config()).train(model_dir, rows(model_dir, 128), work / "ckpt-in-process")
    assert result.train_loss is not None and result.train_loss == result.train_loss, "NaN loss"
    frac = free_fraction()
    assert frac >= 0.85, f"only {frac:.1%} of the GPU is free after the in-process M-step"
    return {"steps": result.steps, "train_loss": round(result.train_loss, 4), "free_after": f"{frac:.1%}"}


def check_hf_sampler(model_dir: Path) -> dict:
    from rest_em.sampling import SampleParams
    from rest_em.sampling.hf import HFSampler

    before = free_fraction()
    sampler = HFSampler(str(model_dir), dtype="bfloat16", batch_size=64)
    assert sampler.device == "cuda", sampler.device
    ps = prompts(model_dir, 16)
    greedy = SampleParams(n=1, temperature=0.0, top_k=0, top_p=1.0, max_tokens=48, seed=0)
    one, two = (sampler.generate(ps, greedy, desc="gpu_check greedy") for _ in range(2))
    assert [c[0].text for c in one] == [c[0].text for c in two], "greedy output differs between two calls"
    text = next(c[0].text for c in one if len(c[0].text) >= 8)
    stop = text[len(text) // 2: len(text) // 2 + 2]
    cut = sampler.generate(ps, dataclasses.replace(greedy, stop=(stop,)), desc="gpu_check stop")
    for full, short in zip(one, cut):
        want = full[0].text.split(stop)[0] if stop in full[0].text else full[0].text
        assert short[0].text == want, f"stop {stop!r}: {short[0].text!r} != {want!r}"
    sampler.close()
    after = free_fraction()
    assert after >= before - 0.01, f"free memory {before:.1%} before the sampler, {after:.1%} after close"
    return {"stop": stop, "free_before": f"{before:.1%}", "free_after_close": f"{after:.1%}"}


def state_dict(path: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(Path(path).glob("*.safetensors")):
        out.update(load_file(f))
    return out


def check_launched(model_dir: Path, work: Path, launcher: str) -> dict:
    from rest_em.mstep import SFTTrainer
    from rest_em.training.launch import LaunchedTrainer

    data = rows(model_dir, 64)
    ref = work / "ckpt-reference-fp32"
    if not ref.exists():
        SFTTrainer(m_step_config(dtype="float32")).train(model_dir, data, ref)
    result = LaunchedTrainer(m_step_config(dtype="float32", launcher=launcher, num_processes=1)).train(
        model_dir, data, work / launcher / "iter_01" / "checkpoint")
    a, b = state_dict(ref), state_dict(Path(result.checkpoint_dir))
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert diff < 1e-4, f"launched weights differ from the in-process ones by up to {diff}"
    return {"max_weight_diff": diff, "job_s": round(result.seconds, 1)}


def check_iterate(model_dir: Path, work: Path) -> dict:
    backend = "vllm" if _has("vllm") else "hf"
    cmd = [sys.executable, "-m", "rest_em.cli", "iterate", "--config", str(REPO / "configs" / "default.yaml"),
           "--iterations", "1", f"model.path={model_dir}", f"run.output_dir={work / 'runs'}", "run.name=gpu-check",
           "task.num_train=8", "task.num_test=4", "sampling.n=2", "sampling.max_tokens=32", "eval.n=2",
           "eval.max_tokens=32", f"sampling.backend={backend}", "training.num_epochs=1"]
    if backend == "vllm":
        cmd += ["sampling.gpu_memory_utilization=0.3", "sampling.max_model_len=1024"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-1500:]
    report = work / "runs" / "gpu-check" / "report.md"
    assert report.exists(), "no report.md"
    log = proc.stderr
    return {"backend": backend, "engine_asleep": "asleep" in log, "closed": "closing the" in log}


def check_round_trip(model_dir: Path, work: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = work / "ckpt-in-process"
    if not src.exists():
        return "needs the in-process M-step's checkpoint"
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
    model.save_pretrained(work / "round-trip", safe_serialization=True)
    tok = AutoTokenizer.from_pretrained(src)
    tok.save_pretrained(work / "round-trip")
    a, b = state_dict(src), state_dict(work / "round-trip")
    assert a.keys() == b.keys() and all(torch.equal(a[k].to(b[k].dtype), b[k]) for k in a), "tensors changed"
    again = AutoTokenizer.from_pretrained(work / "round-trip")
    assert all(tok(t).input_ids == again(t).input_ids for t in CORPUS), "tokenizer changed"
    return {"tensors": len(a)}


def check_vllm(model_dir: Path, work: Path) -> dict | str:
    if not _has("vllm"):
        return "vllm is not installed"
    from rest_em.sampling import SampleParams
    from rest_em.sampling.vllm_backend import VLLMSampler

    ckpt = work / "ckpt-in-process"
    if not ckpt.exists():
        return "needs the in-process M-step's checkpoint"
    util = 0.3
    ps = prompts(model_dir, 8)
    greedy = SampleParams(n=1, temperature=0.0, top_k=0, top_p=1.0, max_tokens=32, seed=0)
    fresh = VLLMSampler(str(ckpt), dtype="bfloat16", gpu_memory_utilization=util, max_model_len=1024)
    want_ckpt = [c[0].text for c in fresh.generate(ps, greedy)]
    fresh.close()
    sampler = VLLMSampler(str(model_dir), dtype="bfloat16", gpu_memory_utilization=util, max_model_len=1024)
    want_base = [c[0].text for c in sampler.generate(ps, greedy)]
    awake = free_fraction()
    assert sampler.sleep(2) is None
    asleep = free_fraction()
    # vLLM's start gate: a new engine needs gpu_memory_utilization of the total free; the trainer needs most of it
    assert asleep >= 0.85, f"asleep (level 2) the engine leaves only {asleep:.1%} free (awake {awake:.1%})"
    assert sampler.wake(str(ckpt)), "wake with the checkpoint failed"
    got = [c[0].text for c in sampler.generate(ps, greedy)]
    assert got == want_ckpt, "after wake with the checkpoint the engine does not sample what a fresh engine on it does"
    assert sampler.sleep(1) is None and sampler.wake(str(ckpt))
    assert [c[0].text for c in sampler.generate(ps, greedy)] == want_ckpt, "level 1 lost the weights"
    assert sampler.switch_model(str(model_dir))
    assert [c[0].text for c in sampler.generate(ps, greedy)] == want_base, "switch back to the base model differs"
    sampler.close()
    return {"free_awake": f"{awake:.1%}", "free_asleep_level2": f"{asleep:.1%}"}


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="also write the JSON summary here")
    ap.add_argument("--require-gpu", action="store_true", help="exit 1 (not 0) when there is no CUDA device")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("gpu_check: torch is not installed; nothing was run (pip install -e '.[train]')")
        return 1 if args.require_gpu else 0
    cuda = torch.cuda.is_available()
    if cuda:
        print(f"gpu_check: {torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}, torch {torch.__version__}, "
              f"CUDA {torch.version.cuda}", flush=True)
    else:
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False); nothing was run, every check is SKIP. "
              "Run it on a machine with a GPU.", flush=True)
    checks = Checks(cuda)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        work = Path(tmp)
        models = {s: build_model(work / f"model-{s}", s) for s in SHAPES} if cuda else {s: work for s in SHAPES}
        for shape in SHAPES:
            for attn in ("sdpa", "eager"):
                checks.run(f"packed-{shape}-{attn}", lambda m=models[shape], a=attn: check_packed(m, a))
        for shape in SHAPES:
            checks.run(f"no-leak-{shape}", lambda m=models[shape]: check_no_leak(m))
        llama = models["llama"]
        checks.run("m-step-in-process", lambda: check_m_step_in_process(llama, work))
        checks.run("hf-sampler", lambda: check_hf_sampler(llama))
        checks.run("launched-torchrun", lambda: check_launched(llama, work, "torchrun"))
        checks.run("launched-accelerate", lambda: check_launched(llama, work, "accelerate"))
        checks.run("iterate", lambda: check_iterate(llama, work))
        checks.run("checkpoint-round-trip", lambda: check_round_trip(llama, work))
        checks.run("vllm-sleep-wake-switch", lambda: check_vllm(llama, work))
    assert [r["check"] for r in checks.results] == CHECKS
    summary = {"device": torch.cuda.get_device_name(0) if cuda else None, "seconds": round(time.perf_counter() - t0, 1),
               "checks": checks.results}
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1))
    failed = [r["check"] for r in checks.results if r["status"] == "FAIL"]
    print(f"gpu_check: {'FAILED: ' + ', '.join(failed) if failed else 'no check failed'} "
          f"({sum(r['status'] == 'PASS' for r in checks.results)} PASS, {sum(r['status'] == 'SKIP' for r in checks.results)} "
          f"SKIP) in {summary['seconds']} s")
    if not cuda:
        return 1 if args.require_gpu else 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
