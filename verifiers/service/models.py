"""The wire format of the verifier service, shared by the server (``verifiers.service.app``) and the
client (``verifiers.client``).

A request is ``{"items": [...]}``; each item is a row as ``rest-em verify`` reads it plus its
``"domain"``. Unknown extra keys are kept and handed to the domain verifier, so a verifier option
added there needs no change here. The response lists one result per item, in request order.

Every error response (4xx, 503) has the same shape, :class:`ErrorResponse`: a machine-readable
``error`` code, a human ``message``, the ``limit`` it hit (when one did) and, for item-level
problems, ``errors`` naming each bad item by its index in the request.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from verifiers.verdict import Outcome, Verdict

ItemId = Union[StrictStr, StrictInt]


class _ItemBase(BaseModel):
    # Extra keys travel through to the domain verifier's own parser, which decides what they mean.
    model_config = ConfigDict(extra="allow")

    id: ItemId = Field(description="Caller's identifier, echoed back in the result.")

    def to_row(self) -> dict[str, Any]:
        """The item as ``rest-em verify`` reads it: the fields the caller sent, without ``domain``."""
        row = self.model_dump(exclude_unset=True)
        row.pop("domain", None)
        return row


class MathItem(_ItemBase):
    domain: Literal["math"]
    reference: StrictStr = Field(description="Gold answer, in the format named by reference_format.")
    response: StrictStr = Field(description="The model's full response text.")
    reference_format: StrictStr | None = Field(
        default=None, description="answer | math_solution | gsm8k (the math verifier's default when absent)."
    )
    response_format: StrictStr | None = Field(
        default=None,
        description="text (extract the final answer from the response) | answer (the whole response is the "
        "answer); the replica's math.response_format (default text) when absent.",
    )


class CodeItem(_ItemBase):
    domain: Literal["code"]
    response: StrictStr = Field(description="The model's response: the program (or text containing it).")
    tests: dict[str, Any] = Field(description="The tests, in one of the code verifier's styles.")


class CustomItem(_ItemBase):
    """An item for the replica's custom function (``rest-em serve-verifier --custom MODULE:FUNCTION``). The
    function is the one the replica loaded at start; nothing in a request names code to import."""

    domain: Literal["custom"]
    response: StrictStr = Field(description="The model's full response text.")
    reference: Any = Field(description="The reference the function compares with (any JSON value).")
    problem: dict[str, Any] | None = Field(default=None, description="The problem, passed to the function as it is.")


Item = Annotated[Union[MathItem, CodeItem, CustomItem], Field(discriminator="domain")]
DOMAINS: tuple[str, ...] = ("math", "code")  # served by default
KNOWN_DOMAINS: tuple[str, ...] = DOMAINS + ("custom",)  # custom: only with --custom (the function is loaded at start)


class VerifyRequest(BaseModel):
    items: list[Item] = Field(description="Items to verify; results come back in this order.")


class VerifyResult(BaseModel):
    """One verdict, with the identity of its item and how long it took."""

    id: ItemId
    domain: Literal["math", "code", "custom"]
    verdict: Outcome
    reason: str
    message: str = ""
    extracted_by: str | None = Field(
        default=None, description="How the judged answer was found (math: an extraction policy or whole_response)."
    )
    answer: str | None = Field(default=None, description="custom: the answer the function reported (maj@k votes on it).")
    queued_s: float = Field(description="Seconds the item's chunk waited for a free verifier slot.")
    elapsed_s: float = Field(description="Wall seconds of the verifier call that judged the item's chunk.")

    def to_verdict(self) -> Verdict:
        return Verdict(self.verdict, self.reason, self.message, self.extracted_by, self.answer)

    @classmethod
    def from_verdict(
        cls, item_id: ItemId, domain: str, verdict: Verdict, queued_s: float = 0.0, elapsed_s: float = 0.0
    ) -> "VerifyResult":
        return cls(
            id=item_id,
            domain=domain,  # type: ignore[arg-type]
            verdict=verdict.outcome,
            reason=verdict.reason,
            message=verdict.message,
            extracted_by=verdict.extracted_by,
            answer=verdict.answer,
            queued_s=queued_s,
            elapsed_s=elapsed_s,
        )


class VerifyResponse(BaseModel):
    results: list[VerifyResult]
    elapsed_s: float = Field(description="Wall seconds the service spent on the whole request.")


class EquivalentRequest(BaseModel):
    pairs: list[tuple[StrictStr, StrictStr]] = Field(
        description="Pairs of extracted answers (e.g. two samples' answers for maj@k voting)."
    )


class EquivalentResponse(BaseModel):
    equivalent: list[bool] = Field(description="One per pair, in request order: the same answer? (a timeout is false)")
    elapsed_s: float = Field(description="Wall seconds the service spent on the whole request.")


class ItemError(BaseModel):
    index: int = Field(description="Position of the bad item in the request's items.")
    id: ItemId | None = None
    field: str = Field(default="", description="Dotted path of the bad field inside the item, if known.")
    message: str


class ErrorResponse(BaseModel):
    error: str = Field(description="Machine-readable code: invalid_json, invalid_request, invalid_items, "
                       "body_too_large, too_many_items, item_too_large, queue_full, unauthorized, ...")
    message: str
    limit: str | None = Field(default=None, description="Name of the limit that was exceeded, if any.")
    errors: list[ItemError] = Field(default_factory=list)


class DomainHealth(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["ok", "degraded", "unavailable"]
    message: str = ""
    details: dict[str, Any] = Field(default_factory=dict, description="The domain verifier's own health().")


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    domains: dict[str, DomainHealth]
    queue_depth: int = Field(description="Items admitted and not yet answered.")
    queue_capacity: int
    in_flight_requests: int
