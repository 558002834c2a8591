"""M-step training throughput: padded batches with the full LM head (before) against padding-free
packed batches with the LM head on supervised positions only (after), on the same data, in one run.

    .venv/bin/python benchmarks/bench_mstep.py                        # the default config's training settings
    .venv/bin/python benchmarks/bench_mstep.py --rows 96 --epochs 1 --batch-sizes 2,4,8

Data: SFT rows shaped like the default run's: the default config's chat prompts for its arithmetic
train problems, each with one or two worked solutions ending in ``\\boxed{answer}``. Model: the default
model (``rest-em setup-model``) unless --model is given. Training settings: the config's
``training:`` section (lr, scheduler, dtype, max_seq_len, per_device_batch_size), --epochs epochs.

Printed: training tokens/s (prompt + completion tokens per second of ``trainer.train``) of each way,
the ratio after/before, the final train loss and the logged loss curve of each (the two ways compute
the same loss on the same batches, so the curves must agree up to floating-point noise). With
--batch-sizes, the new way is also measured at those per-device batch sizes (other batch sizes change
the optimisation, so their loss curves differ by design). The machine is shared and noisy: compare
ratios from one run only.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sft_rows(cfg, model: Path, n_rows: int) -> list[dict]:
    from rest_em.prompts import make_prompt_format
    from rest_em.tasks import load_task

    task = load_task(cfg.task)
    fmt = make_prompt_format(str(model), cfg.model.prompt_style, task)
    rows: list[dict] = []
    for i, p in enumerate(task.train):
        answer = p.payload.get("reference", p.payload.get("answer"))
        for text in (f"{p.solution} The answer is \\boxed{{{answer}}}.",
                     f"We compute {p.solution} So the final answer is \\boxed{{{answer}}}.")[: 1 + i % 2]:
            rows.append({"prompt": fmt.render(p), "completion": text, "problem_id": p.problem_id})
    return rows[:n_rows]


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


class PeakRSS:
    """Samples the resident memory of this process tree every 0.2 s; ``peak`` in bytes."""

    def __init__(self) -> None:
        import threading

        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, tree_rss_bytes(os.getpid()))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def curve(result) -> str:
    return " ".join(f"{step}:{loss:.3f}" for step, loss in result.loss_curve)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--model", default=None)
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-sizes", default="", help="comma-separated extra per-device batch sizes for the new way")
    parser.add_argument("--with-vllm-engine", action="store_true",
                        help="keep a vLLM engine on the model alive while training and print the peak resident "
                             "memory of this process tree (engine + training)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from rest_em.config import load_config
    from rest_em.training import train

    cfg = load_config(args.config)
    model = Path(args.model) if args.model else cfg.model_path()
    rows = sft_rows(cfg, model, args.rows)
    base = dataclasses.replace(cfg.training, num_epochs=args.epochs)
    print(f"model {model}\n{len(rows)} SFT rows, {args.epochs} epoch(s), batch {base.per_device_batch_size}, "
          f"dtype {base.dtype}, lr {base.learning_rate}, {base.lr_scheduler}")
    print(f"load average at start: {os.getloadavg()[0]:.1f}", flush=True)

    ways = {
        "before (padded, full LM head)": dataclasses.replace(base, packing=False, supervised_logits_only=False),
        "after  (packed, LM head on labels)": dataclasses.replace(base, packing=True, supervised_logits_only=True),
    }
    for bs in [int(b) for b in args.batch_sizes.split(",") if b]:
        ways[f"after, batch {bs}"] = dataclasses.replace(base, packing=True, supervised_logits_only=True,
                                                         per_device_batch_size=bs)
    results = {}
    engine, rss = None, PeakRSS()
    if args.with_vllm_engine:
        from rest_em.sampling import SampleParams, make_sampler

        engine = make_sampler(str(model), backend="vllm", dtype=cfg.model.dtype)
        engine.generate([rows[0]["prompt"]] * 4, SampleParams(n=8, max_tokens=48, seed=0))
        print(f"  vLLM engine up: process tree {tree_rss_bytes(os.getpid()) / 2**30:.2f} GiB resident", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, tc) in enumerate(ways.items()):
            results[name] = r = train(str(model), rows, tc, str(Path(tmp) / f"ckpt{i}"))
            print(f"  {name}: {r.tokens_per_s:.0f} tok/s, {r.steps} steps, {r.seconds:.0f}s, final loss {r.train_loss:.4f}",
                  flush=True)

    peak = rss.stop()
    if engine is not None:
        engine.close()
    names = list(ways)
    before, after = results[names[0]], results[names[1]]
    print("\nresults")
    for name in names:
        r = results[name]
        print(f"  {name:36s} {r.tokens_per_s:7.0f} tok/s  train loss {r.train_loss:.4f}  curve {curve(r)}")
    print(f"  ratio after / before: {after.tokens_per_s / before.tokens_per_s:.2f}x   (target >= 2x)")
    print(f"  train loss difference after - before: {after.train_loss - before.train_loss:+.5f}")
    print(f"  peak resident memory of this process tree{' (with the vLLM engine alive)' if engine else ''}: "
          f"{peak / 2**30:.2f} GiB")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
