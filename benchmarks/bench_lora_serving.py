"""Serving a LoRA M-step's result with vLLM: the merged checkpoint (what rest-em does) against the base model
plus the adapter as a vLLM LoRA request (``enable_lora``), on the same prompts, in one run.

    .venv/bin/python benchmarks/bench_lora_serving.py                        # 24 prompts x sampling.n, LoRA r=8
    .venv/bin/python benchmarks/bench_lora_serving.py --problems 48 --lora-r 16 --rounds 2

The adapter: a fresh peft LoRA (every linear layer, r=--lora-r) on the default model with random ``B``
(peft ``init_lora_weights=False``) so it changes the outputs; saved twice, as a peft adapter folder and
merged into a plain checkpoint. Each way runs in its own process (one engine each, the project's CPU engine
settings) and prints:

- ``merged``: engine start on the merged checkpoint; steady tokens/s of E-step sampling (the config's
  ``sampling.n``, temperature, top-p, top-k, max_tokens and the task's stop strings);
- ``lora``: engine start on the base model with ``enable_lora=True``; the first call with the adapter's
  ``LoRARequest`` (it loads the adapter) and steady tokens/s after it.

Then the ratio lora / merged of steady tokens/s, and the greedy agreement of the two ways (the adapter's
outputs should be the merged model's, up to float rounding).

What rest-em does per iteration instead: merge and write the checkpoint (in the M-step), then
``switch_model`` (in-place weight reload, 2.3 s measured for this model in docs/model-and-backends.md).
The machine is shared and noisy: only ratios within one run mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_adapter(model: Path, out: Path, r: int, seed: int) -> tuple[Path, Path]:
    """(adapter folder, merged checkpoint) of one random LoRA adapter on ``model``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(str(model))
    base = AutoModelForCausalLM.from_pretrained(str(model), dtype=torch.float32)
    cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    peft_model = get_peft_model(base, cfg)
    with torch.no_grad():  # peft's random init is large for a trained model: keep the outputs readable
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(0.02)
    adapter, merged = out / "adapter", out / "merged"
    peft_model.save_pretrained(str(adapter))
    peft_model.merge_and_unload().save_pretrained(str(merged), safe_serialization=True)
    tok.save_pretrained(str(merged))
    tok.save_pretrained(str(adapter))
    return adapter, merged


def run_way(args) -> int:
    """Child: one engine, one way; prints one RESULT line."""
    from rest_em.config import load_config
    from rest_em.problem_sets import build_problem_sets
    from rest_em.sampling.params import SampleParams
    from rest_em.sampling.vllm_backend import engine_kwargs, sampling_params

    cfg = load_config(args.config)
    sets = build_problem_sets(cfg, cfg.model_path())
    prompts = [sets.train.prompts[p.problem_id] for p in sets.train.problems[: args.problems]]
    sp = cfg.sampling
    params = SampleParams(n=sp.n, temperature=sp.temperature, top_p=sp.top_p, top_k=sp.top_k,
                          max_tokens=sp.max_tokens, seed=sp.seed, stop=tuple(sets.train.stop))
    greedy = SampleParams(n=1, temperature=0.0, max_tokens=sp.max_tokens, seed=0, stop=tuple(sets.train.stop))
    from vllm import LLM

    lora_request = None
    if args.way == "lora":
        from vllm.lora.request import LoRARequest

        kwargs = engine_kwargs(args.base, cpu=True, dtype=cfg.model.dtype, enable_lora=True, max_lora_rank=args.lora_r,
                               max_loras=1)
        lora_request = LoRARequest("adapter", 1, args.adapter)
    else:
        kwargs = engine_kwargs(args.merged, cpu=True, dtype=cfg.model.dtype)
    kwargs.pop("worker_extension_cls", None)
    t0 = time.perf_counter()
    llm = LLM(**kwargs)
    start_s = time.perf_counter() - t0

    def call(p):
        t = time.perf_counter()
        outs = llm.generate(prompts, sampling_params(p), use_tqdm=False, lora_request=lora_request)
        return time.perf_counter() - t, outs

    first_s, outs = call(params)
    first_tokens = sum(len(o.token_ids) for r in outs for o in r.outputs)
    steady = []
    for _ in range(args.rounds):
        s, outs = call(params)
        steady.append((s, sum(len(o.token_ids) for r in outs for o in r.outputs)))
    _, g = call(greedy)
    print("RESULT " + json.dumps({
        "way": args.way, "start_s": start_s, "first_s": first_s, "first_tokens": first_tokens,
        "steady_tokens_per_s": sum(t for _, t in steady) / max(sum(s for s, _ in steady), 1e-9),
        "greedy": [r.outputs[0].text for r in g]}), flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--problems", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=1, help="steady calls after the first, per way")
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--way", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--base", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--adapter", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--merged", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way:
        return run_way(args)

    from rest_em.config import load_config

    cfg = load_config(args.config)
    base = cfg.model_path()
    print(f"model {base}; {args.problems} prompts x n={cfg.sampling.n}; LoRA r={args.lora_r} on every linear layer; "
          f"load average at start {os.getloadavg()[0]:.1f}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        adapter, merged = make_adapter(Path(base), Path(tmp), args.lora_r, args.seed)
        for way in ("merged", "lora"):
            cmd = [sys.executable, __file__, "--way", way, "--config", args.config, "--problems", str(args.problems),
                   "--rounds", str(args.rounds), "--lora-r", str(args.lora_r), "--base", str(base),
                   "--adapter", str(adapter), "--merged", str(merged)]
            out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
            if out.returncode != 0 or not lines:
                print(f"  {way}: FAILED (exit {out.returncode})\n{out.stderr[-3000:]}")
                continue
            results[way] = r = json.loads(lines[-1][len("RESULT "):])
            print(f"  {way:7s} engine start {r['start_s']:6.1f}s   first call {r['first_s']:6.1f}s "
                  f"({r['first_tokens']} tokens)   steady {r['steady_tokens_per_s']:6.1f} tok/s", flush=True)
    if len(results) == 2:
        m, lo = results["merged"], results["lora"]
        same = sum(a == b for a, b in zip(m["greedy"], lo["greedy"]))
        print(f"  LoRA request / merged checkpoint, steady tokens/s: "
              f"{lo['steady_tokens_per_s'] / max(m['steady_tokens_per_s'], 1e-9):.2f}x")
        print(f"  greedy outputs equal: {same}/{len(m['greedy'])}")
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    return 0 if len(results) == 2 else 1


if __name__ == "__main__":
    sys.exit(main())
