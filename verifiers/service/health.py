"""``GET /healthz``: each domain verifier's state (sandbox pool, math workers), read without blocking."""

from __future__ import annotations

import asyncio
from typing import Any

from verifiers.service.dispatch import DomainLane
from verifiers.service.models import DomainHealth

# Seconds /healthz waits for a domain verifier's own health() before calling it degraded.
HEALTH_TIMEOUT_S = 5.0


async def lane_health(lane: DomainLane) -> DomainHealth:
    if lane.verifier is None:
        return DomainHealth(status="unavailable", message=lane.unavailable_reason)
    health = getattr(lane.verifier, "health", None)
    if health is None:
        return DomainHealth(status="ok", details=_worker_pool_details(lane.verifier))
    try:
        details = await asyncio.wait_for(asyncio.to_thread(health), HEALTH_TIMEOUT_S)
    except asyncio.TimeoutError:
        return DomainHealth(status="degraded", message=f"health check took over {HEALTH_TIMEOUT_S} s")
    except Exception as exc:
        return DomainHealth(status="degraded", message=f"health check raised {type(exc).__name__}: {exc}")
    details = details if isinstance(details, dict) else {"value": details}
    return DomainHealth(status=_health_status(details), details=details)


def _worker_pool_details(verifier: Any) -> dict[str, Any]:
    """For a verifier without ``health()`` (the math verifier): its worker pool's public counters.

    Reads the started pool without touching the ``pool`` property, which would start a new one."""
    pool = getattr(verifier, "_pool", None)
    pids = getattr(pool, "worker_pids", None)
    if pids is None:
        return {"started": False}
    return {"started": True, "workers": len(pids), "worker_pids": list(pids),
            "replaced": getattr(pool, "replaced", None)}


def _health_status(details: dict[str, Any]) -> str:
    """Reads a verifier's health dict: a ``status``/``state`` string, an ``ok``/``healthy``/``available``
    flag, or a sandbox pool's ``alive``/``size``/``closed`` counts."""
    for key in ("status", "state"):
        value = details.get(key)
        if isinstance(value, str):
            return "ok" if value.lower() in ("ok", "healthy", "ready", "up") else "degraded"
    for key in ("ok", "healthy", "available"):
        value = details.get(key)
        if isinstance(value, bool):
            return "ok" if value else "degraded"
    if details.get("closed") is True:
        return "degraded"
    alive, size = details.get("alive"), details.get("size")
    if isinstance(alive, int) and isinstance(size, int) and alive < size:
        return "degraded"  # fewer warm sandbox containers than the pool should hold
    return "ok"
