"""One rank of a launched M-step: ``python -m rest_em.training.worker`` under torchrun / accelerate / deepspeed.

    python -m torch.distributed.run --nproc_per_node 2 -m rest_em.training.worker \\
        --rows iter_01/train_job/rows.jsonl --init /models/base --out iter_01/checkpoint \\
        --config iter_01/train_job/train_config.json --result iter_01/train_job/result.json

Every rank loads the rows and calls the same rank-aware training as the in-process path
(``rest_em.training.train``: the launcher's RANK / WORLD_SIZE make it data-parallel, rank 0 writes the
checkpoint). Rank 0 then writes ``--result`` (the ``TrainResult`` as JSON), which the driver checks
together with the checkpoint files. ``--config`` is a JSON object of ``TrainConfig`` fields (a path or
the text itself). ``--trace-batches DIR`` (or ``$REST_EM_TRACE_BATCHES``) writes, per rank, the fingerprint of every example of every
batch the rank trained on (``DIR/rank_<r>.json``), so a test can check the global batches.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported (see rest_em/cli.py)


def _config(text_or_path: str):
    from rest_em.training import TrainConfig

    p = Path(text_or_path)
    data = json.loads(p.read_text(encoding="utf-8") if p.is_file() else text_or_path)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SystemExit(f"rest_em.training.worker: unknown TrainConfig keys {unknown}")
    return TrainConfig(**data)


def fingerprint(features: dict) -> str:
    """A short id of one tokenized example."""
    import hashlib

    return hashlib.sha1(json.dumps(features["input_ids"]).encode()).hexdigest()[:12]


def _trace_batches(directory: Path, rank: int, world: int) -> None:
    """Wrap the collator so each rank records the examples of each batch it trains on."""
    import atexit

    from rest_em.training import trainer as trainer_mod
    from rest_em.training.packing import bundle_rows

    batches: list[list[str]] = []

    def tracing(base: type) -> type:
        class Tracing(base):  # type: ignore[misc, valid-type]
            def __call__(self, features):
                # prompt-shared bundles hold several rows: record the rows
                rows = [r for f in features for r in (bundle_rows(f) if "groups" in f else [f])]
                batches.append([fingerprint(r) for r in rows])
                return super().__call__(features)

        return Tracing

    # Whichever collator the trainer builds (padded or packed) records its batches.
    trainer_mod.CompletionOnlyCollator = tracing(trainer_mod.CompletionOnlyCollator)
    trainer_mod.PackedCompletionCollator = tracing(trainer_mod.PackedCompletionCollator)
    trainer_mod.PromptSharedCollator = tracing(trainer_mod.PromptSharedCollator)
    directory.mkdir(parents=True, exist_ok=True)

    def dump() -> None:
        (directory / f"rank_{rank}.json").write_text(json.dumps({"rank": rank, "world_size": world, "batches": batches}))

    atexit.register(dump)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rest_em.training.worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", required=True, help="SFT rows (JSONL with prompt, completion, problem_id)")
    parser.add_argument("--init", required=True, help="the model to start from (the base model)")
    parser.add_argument("--out", required=True, help="checkpoint directory to write")
    parser.add_argument("--config", required=True, help="TrainConfig as JSON (a file or the text)")
    parser.add_argument("--result", default=None, help="rank 0 writes the TrainResult here as JSON")
    parser.add_argument("--trace-batches", default=None, help="write each rank's batch fingerprints into this folder")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None,
                        help=argparse.SUPPRESS)  # the deepspeed launcher passes it; LOCAL_RANK says the same
    args = parser.parse_args(argv)

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s rank{rank} %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from rest_em.training import train
    from verifiers.io import read_jsonl, write_text_atomic

    config = _config(args.config)
    rows = [row for _, row in read_jsonl(Path(args.rows))]
    trace = args.trace_batches or os.environ.get("REST_EM_TRACE_BATCHES")
    if trace:
        _trace_batches(Path(trace), rank, world)
    if config.backend == "deepspeed" and world > 1:
        from rest_em.training.deepspeed_cfg import skip_shm_comm_build

        skip_shm_comm_build(any_world_size=True)
    result = train(args.init, rows, config, args.out)
    if rank == 0 and args.result:
        write_text_atomic(Path(args.result), json.dumps(dataclasses.asdict(result), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
