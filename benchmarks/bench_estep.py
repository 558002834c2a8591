"""E-step sampling throughput: vLLM against transformers ``generate`` on the same prompts, in one run.

    .venv/bin/python benchmarks/bench_estep.py                     # the default config's settings
    .venv/bin/python benchmarks/bench_estep.py --problems 32 --rounds 2 [--config configs/default.yaml]

Prompts: the default config's chat prompts for its arithmetic train problems (the first --problems of
them); sampling: its E-step settings (n=8, T=0.7, top-k 40, max_tokens 48, its stop strings, seeds).
Model: the default model (``rest-em setup-model``) unless --model is given.

Both samplers are alive at once and take turns (hf, vllm, hf, vllm, ...) so that load from other users
of the machine falls on both. Printed:

- steady-state tokens/s of each backend (all rounds after its first call) and the ratio vLLM / HF;
- apart from them: vLLM engine start, first-call warm-up (the first call's time minus a steady
  call's time on the same prompts), and ``switch_model`` to a different checkpoint (a copy of the
  model with perturbed weights, written here), plus a check that the switched engine's greedy output
  equals transformers greedy on that checkpoint for the prompts where both are computed.

The machine is shared and noisy: only ratios within one run mean anything.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def perturbed_copy(model_dir: Path, dest: Path, scale: float, seed: int) -> Path:
    """A checkpoint with the base's architecture and tokenizer and different weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * p.std() * scale)
    model.save_pretrained(dest, safe_serialization=True)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(dest)
    return dest


def timed(sampler, prompts, params, desc):
    t0 = time.perf_counter()
    out = sampler.generate(prompts, params, desc=desc)
    seconds = time.perf_counter() - t0
    return out, seconds, sum(c.num_tokens for cs in out for c in cs)


def stop_rate(out) -> float:
    comps = [c for cs in out for c in cs]
    return sum(c.finish_reason == "stop" for c in comps) / max(1, len(comps))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--model", default=None, help="checkpoint directory (default: the config's model)")
    parser.add_argument("--problems", type=int, default=32, help="train problems sampled per round")
    parser.add_argument("--rounds", type=int, default=2, help="steady-state rounds per backend (after the first call)")
    parser.add_argument("--greedy-check", type=int, default=8, help="prompts for the greedy vLLM-vs-HF check")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from rest_em.config import load_config
    from rest_em.estep import sample_params
    from rest_em.prompts import make_prompt_format
    from rest_em.sampling import SampleParams, make_sampler
    from rest_em.tasks import load_task

    cfg = load_config(args.config)
    model = Path(args.model) if args.model else cfg.model_path()
    task = load_task(cfg.task)
    fmt = make_prompt_format(str(model), cfg.model.prompt_style, task)
    problems = task.train[: args.problems]
    prompts = [fmt.render(p) for p in problems]
    params = sample_params(cfg.sampling, fmt.stop, iteration=1)
    print(f"model {model}\n{len(prompts)} prompts x n={params.n}, T={params.temperature}, top_k={params.top_k}, "
          f"top_p={params.top_p}, max_tokens={params.max_tokens}, stop={params.stop!r}, dtype={cfg.model.dtype}")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")

    s = cfg.sampling
    t0 = time.perf_counter()
    vllm = make_sampler(str(model), backend="vllm", dtype=cfg.model.dtype,
                        enable_prefix_caching=s.enable_prefix_caching)
    engine_start = time.perf_counter() - t0
    hf = make_sampler(str(model), backend="hf", dtype=cfg.model.dtype, batch_size=s.batch_size)

    runs: dict[str, list[tuple[float, int]]] = {"hf": [], "vllm": []}
    first: dict[str, float] = {}
    stops: dict[str, list[float]] = {"hf": [], "vllm": []}
    for r in range(args.rounds + 1):
        for name, sampler in (("hf", hf), ("vllm", vllm)):
            out, seconds, tokens = timed(sampler, prompts, params, f"{name} round {r}")
            stops[name].append(stop_rate(out))
            if r == 0:
                first[name] = seconds
            else:
                runs[name].append((seconds, tokens))
            print(f"  {name:4s} round {r}: {tokens} tokens in {seconds:.1f}s = {tokens / seconds:.0f} tok/s "
                  f"(stop rate {stops[name][-1]:.2f})", flush=True)

    def steady(name: str) -> tuple[float, float]:
        secs = sum(x for x, _ in runs[name])
        toks = sum(t for _, t in runs[name])
        return toks / secs, secs / len(runs[name])

    hf_tps, hf_call = steady("hf")
    vl_tps, vl_call = steady("vllm")

    # Switch the live engine to another checkpoint; check it now serves that checkpoint.
    greedy = SampleParams(n=1, temperature=0.0, max_tokens=params.max_tokens, stop=params.stop)
    check = prompts[: args.greedy_check]
    with tempfile.TemporaryDirectory() as tmp:
        other = perturbed_copy(model, Path(tmp) / "other", scale=0.05, seed=1)
        before = [cs[0].text for cs in vllm.generate(check, greedy, desc="greedy, base")]
        t0 = time.perf_counter()
        switched = vllm.switch_model(str(other))
        switch_s = time.perf_counter() - t0
        after = [cs[0].text for cs in vllm.generate(check, greedy, desc="greedy, switched")]
        hf.switch_model(str(other))
        hf_after = [cs[0].text for cs in hf.generate(check, greedy, desc="greedy, hf switched")]
    vllm.close()
    hf.close()

    print("\nresults")
    print(f"  transformers steady state: {hf_tps:7.0f} tok/s ({hf_call:.1f}s per call)")
    print(f"  vLLM         steady state: {vl_tps:7.0f} tok/s ({vl_call:.1f}s per call)")
    print(f"  ratio vLLM / transformers: {vl_tps / hf_tps:.1f}x   (target >= 5x)")
    print(f"  stop rate hf {sum(stops['hf']) / len(stops['hf']):.2f}, vllm {sum(stops['vllm']) / len(stops['vllm']):.2f}")
    print(f"  vLLM engine start:         {engine_start:.1f}s")
    print(f"  vLLM first-call warm-up:   {max(0.0, first['vllm'] - vl_call):.1f}s (first call {first['vllm']:.1f}s, steady {vl_call:.1f}s)")
    print(f"  hf first-call warm-up:     {max(0.0, first['hf'] - hf_call):.1f}s")
    print(f"  vLLM switch_model:         {switch_s:.1f}s (returned {switched}; target <= 20s)")
    changed = sum(a != b for a, b in zip(before, after))
    same_as_hf = sum(a == b for a, b in zip(after, hf_after))
    print(f"  after the switch: greedy output changed on {changed}/{len(check)} prompts; "
          f"equals transformers greedy on the new checkpoint on {same_as_hf}/{len(check)}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0 if switched else 1


if __name__ == "__main__":
    raise SystemExit(main())
