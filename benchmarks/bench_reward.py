"""How much of a GRPO step the reward takes on the code task, and whether the sandbox runs a step's
programs concurrently.

    .venv/bin/python benchmarks/bench_reward.py [--steps 4] [--config configs/code-default.yaml] [KEY=VALUE ...]

1. Runs ``--steps`` GRPO steps (TRL's GRPOTrainer, no evaluation) on the config's code task, rewards
   from the code verifier (warm Docker sandbox pool, ``verifier.workers`` containers), and prints each
   step's reward seconds, step seconds and their ratio, then the total reward share of step time.
2. Verifies the last step's completions again, once as one batch (how the reward calls the verifier:
   the pool runs the programs concurrently) and once one at a time, and prints both times and their
   ratio: a batch should cost about its slowest program times (programs / containers), not the sum.

Needs Docker (``rest-em sandbox-image`` builds the image) and the model of the config
(``rest-em setup-model`` for the embedded one). Everything is written to a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# As rest_em.cli: torch's OpenMP threads must not busy-wait on a small shared CPU (set before torch loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "code-default.yaml"))
    parser.add_argument("--steps", type=int, default=4, help="GRPO steps to time")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. grpo.group_size=8")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from rest_em.algorithms.grpo import StepLog, build_trainer
    from rest_em.config import load_config
    from rest_em.problem_sets import build_problem_sets
    from rest_em.verification import verify_rows

    defaults = ["algorithm=grpo", f"grpo.max_steps={args.steps}", f"grpo.eval_every={args.steps}", "grpo.group_size=8",
                "grpo.prompts_per_step=2", "grpo.micro_batch_size=4", "sampling.max_tokens=96", "training.learning_rate=1e-5",
                "grpo.gradient_checkpointing=false", "training.report_to=none"]
    cfg = load_config(args.config, defaults + list(args.overrides))
    if cfg.task.name not in ("code_embedded", "apps", "humaneval", "mbpp"):
        print(f"bench_reward: {cfg.task.name} is not a code task", file=sys.stderr)
        return 2
    g = cfg.grpo
    with tempfile.TemporaryDirectory(prefix="bench-reward-") as tmp:
        work = Path(tmp)
        sets = build_problem_sets(cfg, cfg.model_path())
        try:
            verifier = sets.train.verifier.get()
            # Warm the pool first (container start-up is a one-off cost, not a step's).
            verify_rows(verifier, sets.train.by_id(), [{"problem_id": sets.train.problems[0].problem_id,
                                                        "sample_idx": 0, "text": "print(1)"}], "warm-up")
            trainer = build_trainer(cfg, cfg.model_path(), sets.train, work / "trainer", StepLog(work), g.max_steps)
            start = time.monotonic()
            trainer.train()
            wall = time.monotonic() - start
            del trainer
            steps = [json.loads(line) for line in (work / "steps.jsonl").open()]
            rollouts = [json.loads(line) for line in (work / "rollouts.jsonl").open()]

            print(f"GRPO on {cfg.task.name}: {g.prompts_per_step} prompts x {g.group_size} completions per step, "
                  f"max {g.max_completion_length} tokens, {verifier.config.pool_size or 'one per core'} sandbox "
                  f"containers; {len(steps)} steps in {wall:.0f} s")
            print("step  reward_s  step_s  reward/step  pass/fail/error  reasons")
            for s in steps:
                reasons: dict[str, int] = {}
                for r in rollouts:
                    if r["step"] == s["step"]:
                        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
                v = s["verdicts"]
                print(f"{s['step']:>4}  {s['reward_s']:8.2f}  {s['step_s']:6.1f}  {s['reward_s'] / s['step_s']:11.3f}  "
                      f"{v['pass']}/{v['fail']}/{v['error']:<13} {reasons}")
            reward_s, step_s = sum(s["reward_s"] for s in steps), sum(s["step_s"] for s in steps)
            print(f"reward share of step time: {reward_s:.2f} s / {step_s:.1f} s = {reward_s / step_s:.4f}")

            last = [r for r in rollouts if r["step"] == steps[-1]["step"]]
            by_id = sets.train.by_id()
            start = time.monotonic()
            verify_rows(verifier, by_id, last, "batch")
            batch_s = time.monotonic() - start
            start = time.monotonic()
            for r in last:
                verify_rows(verifier, by_id, [r], "one")
            one_s = time.monotonic() - start
            ran = sum(r["reason"] != "no_code" for r in last)
            print(f"last step's {len(last)} completions ({ran} reached the sandbox): one batch {batch_s:.2f} s, "
                  f"one at a time {one_s:.2f} s, batch/sequential = {batch_s / one_s:.3f}")
        finally:
            sets.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
