"""``rest-em sandbox-image``: build the code sandbox's Docker image (once; a no-op when it exists).

    rest-em sandbox-image                       # offline: this machine's Python + its libraries, docker import
    rest-em sandbox-image --method dockerfile   # sandbox/image/Dockerfile, where python:3.11-slim can be pulled
    rest-em sandbox-image --print-tag           # the tag the current sources hash to, without building

The tag is ``rest-em-sandbox:<content hash of every input>``; the pool builds or reuses the same tag.
"""

from __future__ import annotations

import argparse
import logging
import time

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sandbox-image", help="build the code sandbox's Docker image (idempotent)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", choices=("offline", "dockerfile"), default="offline",
                   help="offline: package this machine's interpreter (no registry needed); dockerfile: docker build")
    p.add_argument("--force", action="store_true", help="rebuild even when the tag exists")
    p.add_argument("--print-tag", action="store_true", help="print the tag the sources hash to and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sandbox.image import ImageBuildError, ensure_image, image_tag
    from sandbox.pool import SandboxUnavailable, docker_client

    if args.print_tag:
        print(image_tag(args.method))
        return 0
    try:
        client = docker_client()
    except SandboxUnavailable as exc:
        log.error("%s", exc)
        return 1
    t0 = time.monotonic()
    try:
        tag = ensure_image(client, method=args.method, force=args.force)
    except ImageBuildError as exc:
        log.error("%s", exc)
        return 1
    log.info("sandbox image %s ready in %.1f s", tag, time.monotonic() - t0)
    print(tag)
    return 0
