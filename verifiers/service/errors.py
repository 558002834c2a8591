"""Error answers of the verifier service: one shape (``ErrorResponse``) for every 4xx and 503.

``ServiceError`` carries a status, an ``ErrorResponse`` body and headers (``Retry-After``,
``WWW-Authenticate``); ``validation_error`` turns pydantic's complaints about a request body into
400 (not JSON) or 422, tying each to the index and id of its item.
"""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError

from verifiers.service.models import DOMAINS, ErrorResponse, ItemError


class ServiceError(Exception):
    """An error answer: status code, :class:`ErrorResponse` body and extra headers."""

    def __init__(self, status: int, body: ErrorResponse, headers: dict[str, str] | None = None) -> None:
        super().__init__(body.message)
        self.status = status
        self.body = body
        self.headers = headers or {}


def _raw_item_id(body: Any, index: int) -> Any:
    """The ``id`` the caller sent for item ``index``, when the body got far enough to have one."""
    try:
        item_id = body["items"][index]["id"]
    except (KeyError, IndexError, TypeError):
        return None
    return item_id if isinstance(item_id, (str, int)) and not isinstance(item_id, bool) else None


def validation_error(exc: RequestValidationError) -> ServiceError:
    """Pydantic's errors, each tied to the index of its item where there is one."""
    item_errors: list[ItemError] = []
    general: list[str] = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        if err.get("type") == "json_invalid":
            detail = err.get("ctx", {}).get("error", err.get("msg", ""))
            return ServiceError(400, ErrorResponse(error="invalid_json", message=f"request body is not valid JSON: {detail}"))
        if len(loc) >= 2 and loc[0] == "items" and loc[1].isdigit():
            # loc is items, index, [domain tag], field...: the tag is pydantic's, not the caller's.
            rest = [p for p in loc[2:] if p not in DOMAINS]
            index = int(loc[1])
            item_errors.append(ItemError(index=index, id=_raw_item_id(exc.body, index), field=".".join(rest),
                                         message=err.get("msg", "")))
        elif not loc:
            general.append(f'the body must be a JSON object {{"items": [...]}}: {err.get("msg", "")}')
        else:
            general.append(f"{'.'.join(loc)}: {err.get('msg', '')}")
    if item_errors and not general:
        first = item_errors[0]
        where = f"items[{first.index}]" + (f".{first.field}" if first.field else "")
        message = f"{len(item_errors)} invalid item field(s); first: {where}: {first.message}"
        return ServiceError(422, ErrorResponse(error="invalid_items", message=message, errors=item_errors))
    message = "; ".join(general + [f"items[{e.index}].{e.field}: {e.message}" for e in item_errors][:5])
    return ServiceError(422, ErrorResponse(error="invalid_request", message=message, errors=item_errors))
