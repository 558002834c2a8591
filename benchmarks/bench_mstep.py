"""M-step throughput of every training layout, on the same rows, in one run.

    .venv/bin/python benchmarks/bench_mstep.py                         # 96 rows, 1 epoch, the default config
    .venv/bin/python benchmarks/bench_mstep.py --problems 48 --per-problem 4 --epochs 1 --ways today,shared
    .venv/bin/python benchmarks/bench_mstep.py --ways today,deepspeed --ds-rows 16

Ways (each in a fresh process, so its peak resident memory is its own):

- ``padded``: padded batches, full LM head (before the packing work);
- ``today``: padding-free packing, one row per completion (``training.share_prompts: false``);
- ``shared-same-batches``: the ``shared`` way's batches packed one row per completion: the reference for
  prompt sharing with the identical loss curve (same batches, same loss terms);
- ``shared``: prompt-shared packing (each prompt once, its completions after it);
- ``lora``, ``shared-lora``: the same with a LoRA adapter (``--lora-r``, every linear layer);
- ``deepspeed``: ``today`` under DeepSpeed ZeRO-2 on the CPU accelerator (on ``--ds-rows`` rows; compared
  with ``today`` on the same rows).

Data: SFT rows shaped like an iteration of the default run: the default config's chat prompts for its
arithmetic train problems, 3 or 4 worked solutions each (``filter.cap: 4``) ending in ``\\boxed{answer}``.
Model: the default model (``rest-em setup-model``) unless --model is given. Training settings: the config's
``training:`` section, --epochs epochs.

Printed per way: training tokens/s (tokens the model reads per second of ``trainer.train``), supervised
tokens/s (completion tokens learned from per second: the figure that compares layouts), peak RSS, final
loss and loss curve, and the fraction of the machine's float32 matmul peak, measured in the same run on the
model's own shapes (estimated model FLOPs: 6 x parameters per token read for a full fine-tune, 4 x for
LoRA, whose frozen weights need no weight gradient, plus the LM head on supervised tokens only).
The machine is shared and noisy: compare ratios from one run only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported, as `rest-em` does (rest_em/cli.py)

ALL_WAYS = ("padded", "today", "shared-same-batches", "shared", "lora", "shared-lora", "deepspeed")


def sft_rows(cfg, model: Path, problems: int, per_problem: int) -> list[dict]:
    """``per_problem`` or ``per_problem - 1`` distinct worked solutions for each of ``problems`` train problems."""
    from rest_em.prompts import make_prompt_format
    from rest_em.tasks import load_task

    task = load_task(cfg.task)
    fmt = make_prompt_format(str(model), cfg.model.prompt_style, task)
    styles = ("{s} The answer is \\boxed{{{a}}}.", "We compute {s} So the final answer is \\boxed{{{a}}}.",
              "Step by step: {s} Therefore the answer is \\boxed{{{a}}}.", "{s} Hence \\boxed{{{a}}}.")
    rows: list[dict] = []
    for i, p in enumerate(task.train[:problems]):
        answer = p.payload.get("reference", p.payload.get("answer"))
        n = per_problem if i % 3 == 0 else max(1, per_problem - 1)
        for style in styles[:n]:
            rows.append({"prompt": fmt.render(p), "completion": style.format(s=p.solution, a=answer),
                         "problem_id": p.problem_id})
    return rows


def tree_rss_bytes(root: int) -> int:
    """Resident memory of ``root`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(d.name))
            rss[int(d.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def way_config(base, way: str, lora_r: int):
    from rest_em.training import LoRAConfig

    lora = LoRAConfig(r=lora_r)
    return {
        "padded": dataclasses.replace(base, packing=False, supervised_logits_only=False, share_prompts=False),
        "today": dataclasses.replace(base, packing=True, share_prompts=False),
        "shared-same-batches": dataclasses.replace(base, packing=True, share_prompts=True),
        "shared": dataclasses.replace(base, packing=True, share_prompts=True),
        "lora": dataclasses.replace(base, packing=True, share_prompts=False, lora=lora),
        "shared-lora": dataclasses.replace(base, packing=True, share_prompts=True, lora=lora),
        "deepspeed": dataclasses.replace(base, packing=True, share_prompts=False, backend="deepspeed", zero_stage=2),
    }[way]


def run_one(args) -> int:
    """Child process: train one way, print one JSON line."""
    import threading

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("rest_em.training").setLevel(logging.INFO)
    from rest_em.config import load_config
    from rest_em.training import train

    cfg = load_config(args.config)
    model = Path(args.model) if args.model else cfg.model_path()
    rows = sft_rows(cfg, model, args.problems, args.per_problem)
    if args.way == "deepspeed" or args.small:
        rows = rows[: args.ds_rows]
    tc = way_config(dataclasses.replace(cfg.training, num_epochs=args.epochs, report_to="none"), args.way, args.lora_r)
    if args.way == "shared-same-batches":  # the shared way's bundles, each completion in a row of its own
        from rest_em.training import trainer as trainer_mod

        class Unshared(trainer_mod.PromptSharedCollator):
            def __init__(self, share=True, attn_implementation="sdpa"):
                super().__init__(False, attn_implementation)

        trainer_mod.PromptSharedCollator = Unshared
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            peak[0] = max(peak[0], tree_rss_bytes(os.getpid()))

    threading.Thread(target=sample, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        r = train(str(model), rows, tc, str(Path(tmp) / "ckpt"))
    stop.set()
    from transformers import AutoConfig

    mc = AutoConfig.from_pretrained(str(model))
    n_layers_params = _decoder_params(mc)
    head = mc.vocab_size * mc.hidden_size
    epochs = args.epochs
    sup_tokens = r.supervised_tokens_per_s * r.train_seconds
    read_tokens = r.tokens_processed * epochs
    per_token = 4 if tc.lora.enabled else 6
    flops = per_token * n_layers_params * read_tokens + 6 * head * sup_tokens
    print("RESULT " + json.dumps({
        "way": args.way, "rows": len(rows), "steps": r.steps, "train_seconds": r.train_seconds,
        "tokens_per_s": r.tokens_per_s, "supervised_tokens_per_s": r.supervised_tokens_per_s,
        "tokens_read_per_epoch": r.tokens_processed, "final_loss": r.train_loss, "curve": r.loss_curve,
        "peak_rss": peak[0], "flops_per_s": flops / max(r.train_seconds, 1e-9)}), flush=True)
    return 0


def _decoder_params(mc) -> int:
    """Parameters of the decoder layers (no embeddings, no LM head) from a Llama-style config."""
    h, i, layers = mc.hidden_size, mc.intermediate_size, mc.num_hidden_layers
    heads, kv = mc.num_attention_heads, getattr(mc, "num_key_value_heads", mc.num_attention_heads)
    hd = getattr(mc, "head_dim", None) or h // heads
    attn = h * heads * hd + 2 * h * kv * hd + heads * hd * h
    return layers * (attn + 3 * h * i)


def matmul_peak(model: Path, tokens: int = 512, repeats: int = 5) -> float:
    """FLOP/s of float32 matmuls of the model's shapes (tokens x hidden @ hidden x intermediate, both
    directions, and the attention projection), best of ``repeats``, with the trainer's thread count."""
    import torch
    from transformers import AutoConfig

    from rest_em.tokens import available_cpus

    torch.set_num_threads(available_cpus())
    mc = AutoConfig.from_pretrained(str(model))
    h, i = mc.hidden_size, mc.intermediate_size
    shapes = [(tokens, h, i), (tokens, i, h), (tokens, h, h)]
    mats = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in shapes]
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        flops = 0
        for a, b in mats:
            for _ in range(4):
                a @ b
                flops += 2 * a.shape[0] * a.shape[1] * b.shape[1]
        best = max(best, flops / (time.perf_counter() - t0))
    return best


def paired(args) -> int:
    """Noise-robust layout ratios: the same batches trained with each layout in turn (ABAB...), in one
    process, best time of each over ``--paired`` rounds; an optimizer step is part of every timed step.

    Layouts: ``today`` (each completion a packed row of its own), ``shared`` (prompt-shared), each as a
    full fine-tune and with LoRA. The batches are the ``shared`` way's bundles (whole prompt groups of about
    ``per_device_batch_size`` rows), so every layout computes the same loss terms: the printed losses must
    agree to float noise. Printed: seconds per step, supervised tokens/s, tokens read per step, ratio.
    """
    import copy

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rest_em.config import load_config
    from rest_em.tokens import available_cpus, eos_token_ids
    from rest_em.training import LoRAConfig
    from rest_em.training.lora import wrap_lora
    from rest_em.training.packing import PromptSharedCollator, bundle_groups, group_rows, shared_supervised_loss
    from rest_em.training.sft import supervised_loss, tokenize_examples

    torch.set_num_threads(available_cpus())
    cfg = load_config(args.config)
    model_path = Path(args.model) if args.model else cfg.model_path()
    rows = sft_rows(cfg, model_path, args.problems, args.per_problem)
    tok = AutoTokenizer.from_pretrained(str(model_path))
    base = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32)
    base.config.use_cache = False
    tokenized, stats = tokenize_examples(tok, rows, cfg.training.max_seq_len, eos_token_ids(base, tok)[0])
    bundles = bundle_groups(group_rows(tokenized), cfg.training.per_device_batch_size, 0)[: args.paired_batches]
    shared_c, today_c = PromptSharedCollator(True, base.config._attn_implementation), PromptSharedCollator(False)
    batches = {"today": [today_c([b]) for b in bundles], "shared": [shared_c([b]) for b in bundles]}
    n_sup = sum(int(b["loss_targets"].numel()) for b in batches["shared"])
    n_read = {k: sum(int(b["input_ids"].shape[1]) for b in v) for k, v in batches.items()}
    models = {"full": base, "lora": wrap_lora(copy.deepcopy(base), LoRAConfig(r=args.lora_r))}
    opts = {k: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=0.0) for k, m in models.items()}
    best: dict[tuple[str, str], float] = {}
    losses: dict[tuple[str, str], float] = {}
    print(f"paired: {len(bundles)} batches, {n_sup} supervised tokens; tokens read today {n_read['today']}, "
          f"shared {n_read['shared']} ({n_read['today'] / n_read['shared']:.2f}x fewer); {args.paired} rounds", flush=True)
    for rnd in range(args.paired):
        for mk, model in models.items():
            for layout in ("today", "shared") if rnd % 2 == 0 else ("shared", "today"):
                t0 = time.perf_counter()
                total = 0.0
                for batch in batches[layout]:
                    fn = shared_supervised_loss if layout == "shared" else supervised_loss
                    loss = fn(model, batch)
                    loss.backward()
                    opts[mk].step()
                    opts[mk].zero_grad()
                    total += float(loss.detach())
                dt = time.perf_counter() - t0
                key = (mk, layout)
                best[key] = min(best.get(key, float("inf")), dt)
                losses[key] = total / len(batches[layout])
        print(f"  round {rnd + 1}: " + ", ".join(f"{m}/{lay} {best[(m, lay)]:.1f}s" for m, lay in best), flush=True)
    print("\npaired results (best of rounds; lr 0, so every round computes the same losses)")
    for (mk, layout), dt in best.items():
        print(f"  {mk:5s} {layout:7s} {dt / len(bundles):6.2f} s/step  {n_sup / dt:7.1f} supervised tok/s  "
              f"{n_read[layout] / dt:7.1f} tok/s read  mean loss {losses[(mk, layout)]:.6f}")
    for mk in models:
        print(f"  {mk}: shared / today supervised tokens/s = {best[(mk, 'today')] / best[(mk, 'shared')]:.2f}x, "
              f"loss difference {abs(losses[(mk, 'shared')] - losses[(mk, 'today')]):.1e}")
    print(f"  lora / full (today layout) = {best[('full', 'today')] / best[('lora', 'today')]:.2f}x")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--model", default=None)
    parser.add_argument("--problems", type=int, default=29, help="train problems (rows: 3 or 4 per problem)")
    parser.add_argument("--per-problem", type=int, default=4)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--ways", default=",".join(w for w in ALL_WAYS if w != "padded"))
    parser.add_argument("--ds-rows", type=int, default=16, help="rows of the deepspeed way (and of its `today` twin)")
    parser.add_argument("--paired", type=int, default=0, help="instead: N rounds of the paired layout comparison")
    parser.add_argument("--paired-batches", type=int, default=6, help="batches per round of --paired")
    parser.add_argument("--way", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--small", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way:
        return run_one(args)
    if args.paired:
        return paired(args)

    from rest_em.config import load_config

    cfg = load_config(args.config)
    model = Path(args.model) if args.model else cfg.model_path()
    rows = sft_rows(cfg, model, args.problems, args.per_problem)
    t = cfg.training
    print(f"model {model}\n{len(rows)} SFT rows over {args.problems} problems, {args.epochs} epoch(s), batch "
          f"{t.per_device_batch_size}, dtype {t.dtype}, lr {t.learning_rate}, {t.lr_scheduler}, LoRA r {args.lora_r}")
    print(f"load average at start: {os.getloadavg()[0]:.1f}", flush=True)
    peak = matmul_peak(model)
    print(f"float32 matmul peak on the model's shapes: {peak / 1e9:.1f} GFLOP/s", flush=True)
    ways = [w for w in args.ways.split(",") if w]
    unknown = sorted(set(ways) - set(ALL_WAYS))
    if unknown:
        raise SystemExit(f"unknown ways {unknown}; choose from {ALL_WAYS}")
    jobs = [(w, False) for w in ways if w != "deepspeed"]
    if "deepspeed" in ways:
        jobs += [("today", True), ("deepspeed", True)]
    results: dict[tuple[str, bool], dict] = {}
    for way, small in jobs:
        cmd = [sys.executable, __file__, "--way", way, "--config", args.config, "--problems", str(args.problems),
               "--per-problem", str(args.per_problem), "--epochs", str(args.epochs), "--lora-r", str(args.lora_r),
               "--ds-rows", str(args.ds_rows), *(["--model", args.model] if args.model else []),
               *(["--small"] if small else [])]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            print(f"  {way}: failed (exit {proc.returncode})\n{proc.stderr[-3000:]}", flush=True)
            continue
        r = results[(way, small)] = json.loads(line[len("RESULT "):])
        label = f"{way}{' (ds rows)' if small else ''}"
        print(f"  {label:24s} {r['rows']} rows {r['steps']} steps {r['train_seconds']:.0f}s train, "
              f"{time.perf_counter() - t0:.0f}s total, final loss {r['final_loss']:.4f}", flush=True)

    print("\nresults (tokens/s = tokens read per second; supervised = completion tokens per second)")
    print(f"  {'way':26s} {'tok/s':>7s} {'sup tok/s':>9s} {'read/epoch':>10s} {'peak RSS':>9s} {'loss':>7s} {'of peak':>7s}  curve")
    for (way, small), r in results.items():
        curve = " ".join(f"{s}:{v:.3f}" for s, v in r["curve"])
        print(f"  {way + (' (ds rows)' if small else ''):26s} {r['tokens_per_s']:7.0f} {r['supervised_tokens_per_s']:9.1f} "
              f"{r['tokens_read_per_epoch']:10d} {r['peak_rss'] / 2**30:8.2f}G {r['final_loss']:7.4f} "
              f"{r['flops_per_s'] / peak:7.1%}  {curve}")

    def ratio(a: tuple[str, bool], b: tuple[str, bool], what: str = "supervised_tokens_per_s") -> str:
        if a in results and b in results:
            return f"{results[a][what] / results[b][what]:.2f}x"
        return "n/a"

    print(f"\n  prompt-shared / today (supervised tokens/s):              {ratio(('shared', False), ('today', False))}"
          "   (target >= 1.6x)")
    print(f"  prompt-shared / same batches unshared (supervised tok/s): "
          f"{ratio(('shared', False), ('shared-same-batches', False))}")
    if ("shared", False) in results and ("shared-same-batches", False) in results:
        a, b = results[("shared", False)]["curve"], results[("shared-same-batches", False)]["curve"]
        gap = max((abs(x[1] - y[1]) for x, y in zip(a, b)), default=float("nan"))
        print(f"  largest loss-curve gap, shared vs same batches unshared:  {gap:.2e}")
    print(f"  LoRA / full fine-tune (supervised tok/s):                 {ratio(('lora', False), ('today', False))}, "
          f"peak RSS {ratio(('lora', False), ('today', False), 'peak_rss')}")
    print(f"  shared LoRA / today (supervised tok/s):                   {ratio(('shared-lora', False), ('today', False))}")
    print(f"  deepspeed / plain on {args.ds_rows} rows (tokens/s):            "
          f"{ratio(('deepspeed', True), ('today', True), 'tokens_per_s')}   (target >= 0.5x)")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
