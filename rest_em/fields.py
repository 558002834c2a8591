"""``opt()``: a dataclass field with its help text beside it (read by ``rest_em.config_docs``).

    learning_rate: float = opt(2e-5, "peak learning rate")
    k_list: list[int] = opt(help="pass@k for each k", factory=lambda: [1, 4])
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable


def opt(default: Any = dataclasses.MISSING, help: str = "", *, factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field whose ``metadata["help"]`` documents it; ``factory`` for mutable defaults."""
    if not help:
        raise ValueError("opt() needs a help text: every config field is documented where it is defined")
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def help_of(f: dataclasses.Field) -> str:
    return f.metadata.get("help", "")
