"""``rest-em report RUN_DIR``: rebuild report.md, report.json and metrics.png from a run directory."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="regenerate the report files of a run directory", description=__doc__)
    p.add_argument("run_dir", metavar="RUN_DIR", help="e.g. runs/default")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from rest_em.report import write_report

    run_dir = Path(args.run_dir)
    if not (run_dir / "config.yaml").exists():
        print(f"rest-em report: {run_dir} is not a run directory (no config.yaml)", file=sys.stderr)
        return 2
    print(f"report is at {write_report(run_dir)}")
    return 0
