"""One module per ``rest-em`` subcommand.

Each module defines ``register(subparsers)`` (adds its parser and sets ``func``) and keeps heavy
imports (torch, transformers, vllm, deepspeed, fastapi) inside the function that runs the command,
so ``rest-em --help`` and ``rest-em verify`` start fast.
"""
