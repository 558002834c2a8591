"""``opt()``: a dataclass field with its help text beside it (read by ``rest_em.config_docs``).

    learning_rate: float = opt(2e-5, "peak learning rate")
    k_list: list[int] = opt(help="pass@k for each k", factory=lambda: [1, 4])
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable


def opt(default: Any = dataclasses.MISSING, help: str = "", *, factory: Callable[[], Any] | None = None,
        derived: str | None = None) -> Any:
    """A dataclass field whose ``metadata["help"]`` documents it; ``factory`` for mutable defaults.

    ``derived="model.dtype"``: within a run config the field is not a key of its own but takes the value of
    that key (it is left out of config.yaml and the config reference; standalone uses still set it)."""
    if not help:
        raise ValueError("opt() needs a help text: every config field is documented where it is defined")
    metadata = {"help": help, **({"derived": derived} if derived else {})}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def help_of(f: dataclasses.Field) -> str:
    return f.metadata.get("help", "")
