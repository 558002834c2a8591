"""``rest-em verify``: verdicts for a JSONL file of model responses, or for one pair.

    rest-em verify --domain math samples.jsonl -o verdicts.jsonl
    rest-em verify --domain math --reference '\\frac12' --response 'so \\boxed{0.5}'
    rest-em verify --custom my_pkg.rewards:judge samples.jsonl -o verdicts.jsonl   # your own function

The verifier comes from ``verifiers.registry.get_verifier`` and validates its own rows. The only
math-specific part is the option defaults: responses graded here are free text from anywhere, so the
math verifier also tries ``last_math`` (the last math span) after the pipeline's default policies.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from typing import Any

logger = logging.getLogger(__name__)

# Rows handed to the verifier per call: small enough for a smooth progress bar, large enough that
# the worker pool stays busy between calls.
_BATCH_ROWS = 512
# Below this many rows a progress bar is noise.
_PROGRESS_MIN_ROWS = 100

EPILOG = r"""input (one JSON object per line):
  math:  {"id": "p1", "reference": "\\frac{1}{2}", "response": "... so $\\boxed{0.5}$"}
         optional "reference_format": "answer" (default: a bare answer, LaTeX allowed),
         "math_solution" (a MATH solution; its last \boxed{}) or "gsm8k" (the text after ####)
         optional "response_format": "text" (extract the final answer; the default, or what
         --response-format says) or "answer" (the whole response is the answer, e.g. "\frac{1}{2}";
         a short text around it, "Answer: $\frac{1}{2}$", is read by its last math expression)
  code:  {"id": "p2", "response": "def f(x): ...", "tests": ...}
  --custom MOD:FN  {"id": "p3", "response": "...", "reference": <any JSON>, "problem": {...}}
         (no --domain: FN(response, reference, problem), or veRL's compute_score(data_source,
         solution_str, ground_truth, extra_info); problem is optional, the row's other keys by default)

output: each input row plus "verdict" (pass | fail | error), "reason" and "message", and for math
  "extracted_by" (the extraction policy that found the answer, or whole_response) when one was found;
  the closing log line counts them (last_math in answer format = a wrapped answer).
  fail  = the model was wrong (wrong_answer, no_answer, timeout, ...)
  error = our side broke (e.g. unparseable_reference); never counted as pass or fail

examples:
  rest-em verify --domain math samples.jsonl -o verdicts.jsonl --timeout-s 5 --workers 2
  rest-em verify --domain math --reference 42 --response 'The answer is 42.'
  rest-em verify --domain math --reference-format gsm8k --reference '#### 18' --response '... #### 18'
  rest-em verify --domain math --response-format answer answers.jsonl -o verdicts.jsonl
  rest-em verify --custom path/to/reward.py:compute_score --custom-threshold 0.5 rows.jsonl -o verdicts.jsonl

exit status: 0 when verdicts were written (fail and error verdicts are data), 2 for malformed
input (the file, line and problem are named; nothing is written)."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="verdicts (pass/fail/error) for model responses in a JSONL file, or for one pair",
        description="Check model responses with a binary verifier and write a verdict for each row.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", nargs="?", help="JSONL file of rows to verify (see the input format below)")
    parser.add_argument("-o", "--output", help="where to write the rows with their verdicts (JSONL)")
    parser.add_argument("--domain", default=None, help="verifier domain: math or code (default: math)")
    parser.add_argument("--custom", metavar="MODULE:FUNCTION",
                        help="your own scoring function instead of a domain verifier: package.module:function or "
                             "path/to/file.py:function (see verifier.custom in docs/tasks.md)")
    parser.add_argument("--custom-threshold", type=float, help="--custom: a score at or above this passes (default 1.0)")
    parser.add_argument("--reference", help="one-off form: the reference answer")
    parser.add_argument("--response", help="one-off form: the model response")
    parser.add_argument("--reference-format", help="one-off form: answer (default), math_solution or gsm8k")
    parser.add_argument(
        "--response-format", choices=("text", "answer"),
        help="math: how to read responses without a per-row response_format: text (extract the final "
             "answer; default) or answer (the whole response is the answer)",
    )
    parser.add_argument(
        "--extraction-policies",
        help="math: comma-separated extraction policies, tried in order (default: "
             "last_boxed,answer_is,gsm8k_hash,last_math)",
    )
    parser.add_argument("--decimal-comma", choices=("auto", "never", "always"),
                        help="math: is 3,5 three and a half? (default auto: in a response, where no thousands reading fits)")
    parser.add_argument("--percent", choices=("either", "number", "fraction"),
                        help="math: does 10\\%% equal 10 and 0.1 (either, the default), 10 only (number) or 0.1 only (fraction)?")
    parser.add_argument("--numeric-tolerance", type=float,
                        help="math: coarsest relative precision at which a decimal equals a symbolic reference "
                             "(default 1e-3; 0 = never)")
    parser.add_argument("--timeout-s", type=float, help="wall-clock limit per check in seconds (math default: 5)")
    parser.add_argument("--workers", type=int, help="worker processes (default: one per CPU core)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(func=run, _parser=parser)


def run(args: argparse.Namespace) -> int:
    from verifiers.io import InputError
    from verifiers.registry import get_verifier

    parser: argparse.ArgumentParser = args._parser
    one_off = args.reference is not None or args.response is not None
    if one_off and args.input:
        parser.error("give either INPUT (file mode) or --reference/--response (one-off form), not both")
    if one_off and (args.reference is None or args.response is None):
        parser.error("the one-off form needs both --reference and --response")
    if not one_off and not (args.input and args.output):
        parser.error("file mode needs INPUT and -o OUTPUT (or use --reference/--response)")
    if not one_off and args.reference_format:
        parser.error("--reference-format belongs to the one-off form; in a file, set it per row")

    options: dict[str, Any] = {
        k: v for k, v in {"timeout_s": args.timeout_s, "workers": args.workers}.items() if v is not None
    }
    if args.custom is not None:
        if args.domain is not None:
            parser.error("--custom replaces the domain verifier: give --custom or --domain, not both")
        if args.reference_format or args.response_format is not None or args.extraction_policies is not None:
            parser.error("--reference-format, --response-format and --extraction-policies are math options, not --custom ones")
        args.domain = "custom"
        options.update(spec=args.custom, threshold=args.custom_threshold)
    elif args.custom_threshold is not None:
        parser.error("--custom-threshold goes with --custom")
    args.domain = args.domain or "math"
    if args.domain == "custom" and args.custom is None:
        parser.error("--domain custom: name the function with --custom MODULE:FUNCTION")
    if args.domain == "math":
        from verifiers.math.extract import FREE_TEXT_POLICIES

        options["extraction_policies"] = (
            tuple(p.strip() for p in args.extraction_policies.split(",") if p.strip())
            if args.extraction_policies is not None else FREE_TEXT_POLICIES
        )
        if args.response_format is not None:
            options["response_format"] = args.response_format
        for key in ("decimal_comma", "percent", "numeric_tolerance"):
            if getattr(args, key) is not None:
                options[key] = getattr(args, key)
    elif any(v is not None for v in (args.response_format, args.extraction_policies, args.decimal_comma, args.percent,
                                      args.numeric_tolerance)):
        parser.error("--response-format, --extraction-policies, --decimal-comma, --percent and --numeric-tolerance "
                     "are math options (--domain math)")
    try:
        verifier = get_verifier(args.domain, **options)
    except ValueError as exc:
        logger.error("%s", exc)  # e.g. an unknown extraction policy or a custom function that cannot be loaded
        return 2
    try:
        if one_off:
            return _verify_one_off(verifier, args)
        return _verify_file(verifier, args)
    except InputError as exc:
        logger.error("%s", exc)
        return 2
    finally:
        verifier.close()


def _verify_one_off(verifier: Any, args: argparse.Namespace) -> int:
    row: dict[str, Any] = {"id": "one-off", "reference": args.reference, "response": args.response}
    if args.reference_format:
        row["reference_format"] = args.reference_format
    item = verifier.parse_item(row, where="--reference/--response")
    verdict = verifier.verify_batch([item])[0]
    sys.stdout.write(json.dumps(verdict.to_dict(), ensure_ascii=False) + "\n")
    return 0


def _verify_file(verifier: Any, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from verifiers.io import InputError, read_jsonl, write_jsonl_atomic

    # Every row is read and validated before anything is verified: a bad line 9,000 must not cost
    # the verification of the first 8,999 rows, and must leave no partial output behind.
    rows: list[dict[str, Any]] = []
    items: list[Any] = []
    try:
        for lineno, row in read_jsonl(args.input):
            items.append(verifier.parse_item(row, where=f"{args.input}:{lineno}"))
            rows.append(row)
    except FileNotFoundError:
        raise InputError(f"{args.input}: no such file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{args.input}: not UTF-8 text ({exc.reason})") from None

    verdicts = []
    disable = args.no_progress or len(items) < _PROGRESS_MIN_ROWS
    with tqdm(total=len(items), desc=f"verify {args.domain}", unit="row", file=sys.stderr, disable=disable) as bar:
        for start in range(0, len(items), _BATCH_ROWS):
            batch = verifier.verify_batch(items[start : start + _BATCH_ROWS])
            verdicts.extend(batch)
            bar.update(len(batch))

    written = write_jsonl_atomic(args.output, ({**row, **v.to_dict()} for row, v in zip(rows, verdicts)))
    counts = Counter(v.outcome.value for v in verdicts)
    logger.info(
        "%d rows -> %s: %d pass, %d fail, %d error",
        written, args.output, counts["pass"], counts["fail"], counts["error"],
    )
    extracted = Counter(v.extracted_by for v in verdicts if v.extracted_by is not None)
    if extracted:  # how the judged answers were found: how often a wrapped answer was read by last_math
        logger.info("answers extracted by: %s", ", ".join(f"{k} {n}" for k, n in extracted.most_common()))
    if counts["error"]:
        logger.warning("%d rows got an error verdict (our side, not the model's): see their reason", counts["error"])
    return 0
