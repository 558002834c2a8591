"""The verifiers as an HTTP service (FastAPI): ``rest-em serve-verifier``; client in ``verifiers.client``.

    from verifiers.service import ServiceSettings, Limits, create_app

The server needs the ``serve`` extra (fastapi, uvicorn, prometheus-client). ``verifiers.service.models``
needs only pydantic, so the client (``verifiers.client``: httpx + pydantic) can share the wire models
without installing the server: the names below are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "create_app": "verifiers.service.app",
    "ServiceSettings": "verifiers.service.app",
    "TOKEN_ENV": "verifiers.service.app",
    "Limits": "verifiers.service.limits",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'verifiers.service' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
