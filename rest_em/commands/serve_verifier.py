"""``rest-em serve-verifier``: the math and code verifiers as an HTTP service (FastAPI + uvicorn).

    rest-em serve-verifier --port 8000                       # loopback only, math and code
    rest-em serve-verifier --custom my_pkg.rewards:judge     # also domain "custom": your function, loaded at start
    rest-em serve-verifier --host 0.0.0.0 --workers 8        # all interfaces; set a token first
    REST_EM_VERIFIER_TOKEN=secret rest-em serve-verifier --set math.timeout_s=10 --set code.pool_size=4

One process per replica: ``--workers`` sets the math verifier's worker processes (the CPU-bound
part); the event loop itself only parses JSON and hands batches to threads. To use more machines,
run more replicas behind a load balancer (docs/service.md). SIGTERM or Ctrl-C stops accepting
connections, finishes the requests in flight, then closes the verifiers.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
from typing import Any

logger = logging.getLogger(__name__)

# Field name of verifiers.service.Limits -> help text; each becomes --max-body-bytes etc.
_LIMIT_HELP = {
    "max_body_bytes": "largest request body",
    "max_items_per_request": "most items in one request",
    "max_text_chars": "longest math response/reference or code response",
    "max_tests_chars": "largest code item tests, as JSON",
    "max_queue_items": "most items admitted at once; past it requests get 503 + Retry-After",
    "chunk_items": "items per verify_batch call (requests take turns chunk by chunk)",
    "slots_per_domain": "concurrent verify_batch calls per domain",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve-verifier",
        help="serve the verifiers over HTTP (POST /v1/verify, /get_reward, /run_code, /healthz, /metrics, /docs)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=None,
                   help="math verifier worker processes (default: one per CPU core)")
    p.add_argument("--domains", default="math,code", help="comma-separated domains this replica serves")
    p.add_argument("--custom", metavar="MODULE:FUNCTION",
                   help="also serve domain `custom` with this scoring function (package.module:function or "
                        "path/to/file.py:function), loaded once at start; requests never name code to import")
    p.add_argument("--custom-threshold", type=float, default=None, help="--custom: a score at or above this passes (default 1.0)")
    p.add_argument("--set", dest="options", action="append", default=[], metavar="DOMAIN.KEY=VALUE",
                   help="a verifier option, e.g. math.timeout_s=10 or code.pool_size=4 (repeatable; "
                        "VALUE is read as YAML)")
    for name, text in _LIMIT_HELP.items():
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int, default=None, help=text)
    p.add_argument("--reward-max-error-rate", type=float, default=None,
                   help="POST /get_reward: largest share of `error` verdicts a batch may have and still be answered; "
                        "above it the batch gets 503 and OpenRLHF retries it (default 0.0: any error)")
    p.add_argument("--reward-error-score", type=float, default=None,
                   help="POST /get_reward: the reward of an `error` item in a batch under that limit, counted in "
                        "extra_logs.verifier_error (default 0.0)")
    p.add_argument("--warm-before-listening", action="store_true",
                   help="open the port only once the verifiers are warm (default: listen at once and hold requests "
                        "until they are, so a restarted replica is reachable within a client's retries)")
    p.add_argument("--max-connections", type=int, default=512,
                   help="connections served at once; more get 503 from uvicorn")
    p.add_argument("--graceful-timeout-s", type=float, default=300.0,
                   help="on shutdown, how long to wait for requests in flight")
    p.set_defaults(func=run)


def parse_options(pairs: list[str], domains: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``["math.timeout_s=10"]`` -> ``{"math": {"timeout_s": 10}}``; a malformed pair is a ValueError."""
    import yaml

    options: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        domain, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ValueError(f"--set {pair!r}: expected DOMAIN.KEY=VALUE, e.g. math.timeout_s=10")
        if domain not in domains:
            raise ValueError(f"--set {pair!r}: domain {domain!r} is not served (serving: {', '.join(domains)})")
        options.setdefault(domain, {})[name] = yaml.safe_load(raw) if raw else ""
    return options


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from verifiers.service import Limits, ServiceSettings, create_app

    domains = tuple(d.strip() for d in args.domains.split(",") if d.strip())
    if args.custom and "custom" not in domains:
        domains += ("custom",)
    try:
        if "custom" in domains and not args.custom:
            raise ValueError("domain custom needs --custom MODULE:FUNCTION (the function is loaded at start)")
        options = parse_options(args.options, domains)
        if args.custom:
            from verifiers.custom import load_function

            load_function(args.custom)  # a bad spec stops the start here, with the reason
            options.setdefault("custom", {}).update(spec=args.custom, threshold=args.custom_threshold)
        elif args.custom_threshold is not None:
            raise ValueError("--custom-threshold goes with --custom")
        if args.workers is not None:
            if "math" not in domains:
                raise ValueError("--workers sets the math worker processes, but this replica serves no math")
            options.setdefault("math", {})["workers"] = args.workers
        limit_overrides = {n: getattr(args, n) for n in _LIMIT_HELP if getattr(args, n) is not None}
        from verifiers.service.peers import RewardSettings

        reward = {k: v for k, v in (("max_error_rate", args.reward_max_error_rate),
                                    ("error_score", args.reward_error_score)) if v is not None}
        settings = ServiceSettings(
            reward=RewardSettings(**reward),
            warm_before_listening=args.warm_before_listening,
            domains=domains,
            verifier_options=options,
            limits=Limits(**limit_overrides),
            token=ServiceSettings.token_from_env(),
        )
    except ValueError as exc:
        logger.error("%s", exc)
        return 2
    if not _is_loopback(args.host) and settings.token is None:
        logger.warning("serving on %s without a token: anyone who can reach it can run code in the sandbox; "
                       "set REST_EM_VERIFIER_TOKEN", args.host)
    logger.info("verifier service on http://%s:%d (domains: %s; docs at /docs)", args.host, args.port, ", ".join(domains))
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_config=None,  # keep the CLI's logging setup
        access_log=logging.getLogger().isEnabledFor(logging.DEBUG),
        limit_concurrency=args.max_connections,
        timeout_graceful_shutdown=args.graceful_timeout_s,
    )
    return 0
