"""Test specifications (``CodeItem.tests``) from the public datasets' own row formats.

    humaneval_tests(row)            a HumanEval.jsonl row
    mbpp_tests(row)                 an mbpp.jsonl or sanitized-mbpp.json row
    apps_tests(input_output)        APPS input_output (the JSON object, or the JSON string the HF copy stores)
"""

from __future__ import annotations

import json
from typing import Any


def humaneval_tests(row: dict[str, Any]) -> dict[str, Any]:
    return {"style": "humaneval", "prompt": row["prompt"], "test": row["test"], "entry_point": row["entry_point"]}


def mbpp_tests(row: dict[str, Any]) -> dict[str, Any]:
    setup = row.get("test_setup_code", "")
    if not setup and row.get("test_imports"):
        setup = "\n".join(row["test_imports"])
    return {"style": "assert", "test_list": list(row["test_list"]), "setup": setup}


def _text(value: Any) -> str:
    # The original APPS files store some inputs/outputs as lists of lines.
    return "\n".join(map(str, value)) + "\n" if isinstance(value, list) else str(value)


def apps_tests(input_output: dict[str, Any] | str) -> dict[str, Any]:
    io = json.loads(input_output) if isinstance(input_output, str) else input_output
    if io.get("fn_name"):
        return {"style": "call", "fn_name": io["fn_name"], "inputs": io["inputs"], "outputs": io["outputs"]}
    return {"style": "stdio", "inputs": [_text(x) for x in io["inputs"]], "outputs": [_text(x) for x in io["outputs"]]}
