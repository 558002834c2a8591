"""``rest-em compare RUN_DIR...``: several runs side by side, one markdown table and one plot.

    rest-em compare runs/rest_em runs/dpo -o docs/compare.md --plot docs/compare.png

The table (printed; written with ``-o``) has, for every run and iteration, greedy pass@1, pass@k, maj@k,
train coverage, the M-step's rows and the wall time of each stage, then the per-level rows and each
run's total time. Every figure has its 95% bootstrap interval over the test problems; every pair of
runs gets the paired difference of each metric at their final iterations, marked where its interval
excludes 0. Runs of one config that differ only in their seeds (``rest-em iterate --seeds 3``) are
grouped: the mean with its spread over the seeds, and the seeds pooled for the paired interval.
``--x flops`` plots each metric against the run's cumulative compute estimate instead of the
iteration. Runs that evaluated different test problems or with different evaluation settings are
refused (exit status 2), naming the difference.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help="compare several run directories: one table and one plot",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="e.g. runs/rest_em runs/dpo")
    p.add_argument("-o", "--output", default=None, help="also write the markdown table to this file")
    p.add_argument("--plot", default=None, help="the plot's path (default: OUTPUT with .png, else compare.png)")
    p.add_argument("--x", default="iteration", choices=("iteration", "flops"),
                   help="the plot's x axis: the iteration, or cumulative FLOPs (2N per sampled, 6N per trained token)")
    p.set_defaults(func=run, _positional_list="run_dirs")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from rest_em.comparison import ComparisonError, compare_runs, plot_comparison, render_comparison
    from verifiers.io import write_text_atomic

    try:
        data = compare_runs([Path(d) for d in args.run_dirs])
    except ComparisonError as exc:
        print(f"rest-em compare: {exc}", file=sys.stderr)
        return 2
    text = render_comparison(data)
    print(text, end="")
    if args.output:
        write_text_atomic(Path(args.output), text)
    plot = Path(args.plot) if args.plot else (Path(args.output).with_suffix(".png") if args.output else Path("compare.png"))
    plot_comparison(data, plot, x=args.x)
    print(f"plot is at {plot}", file=sys.stderr)
    return 0
