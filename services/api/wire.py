"""HTTP shapes, wire-compatible with the original botify service."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi.exceptions import RequestValidationError
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

from botify.delivery import DeliveryStatus
from botify.events import MAX_ID


def _integral(value: object) -> object:
    # JSON Schema's integer includes 42.0 (a number with no fraction): so does the API's.
    # Booleans and strings are left to the strict check, which refuses them.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


TrackId = Annotated[
    int, Field(ge=0, le=MAX_ID, description="A catalog track id."), BeforeValidator(_integral)
]


class NextRequest(BaseModel):
    """The track just played and the fraction of it listened to."""

    # Strict: no coercion from strings or booleans (`"1"`, `true`, `false` are refused); an
    # integer is still a valid `time` (JSON has one number type), as in the original.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, strict=True)

    track: TrackId
    time: Annotated[float, Field(ge=0.0, le=1.0, description="Listened fraction, 0..1.")]


class NextResponse(BaseModel):
    user: int
    track: int


class LastResponse(BaseModel):
    user: int


class TrackResponse(BaseModel):
    track: int
    artist: str
    title: str
    genre: str | None = None
    recommendations: list[int] = []


class ErrorResponse(BaseModel):
    error: str
    detail: str | list[dict[str, object]]


class ComponentHealth(BaseModel):
    ok: bool
    detail: str = ""


class HealthResponse(BaseModel):
    status: str
    redis: ComponentHealth
    delivery: DeliveryStatus


# A path id is decimal digits only, like the original's Flask `<int:...>` converter: no sign,
# no underscores, no spaces (which int() and lax validation would take). 10 digits cover
# MAX_ID; the range is checked after.
ID_PATTERN = r"^[0-9]{1,10}$"
_DIGITS = re.compile(ID_PATTERN)


def path_id(raw: str, name: str) -> int:
    """A path parameter as an id, or ``RequestValidationError`` saying why not."""
    if not _DIGITS.fullmatch(raw):
        raise RequestValidationError(
            [
                {
                    "type": "int_parsing",
                    "loc": ("path", name),
                    "msg": "must be decimal digits only (no sign, spaces or underscores)",
                    "input": raw,
                }
            ]
        )
    value = int(raw)  # digits only: never negative, so only the maximum is left to check
    if value > MAX_ID:
        raise RequestValidationError(
            [
                {
                    "type": "less_than_equal",
                    "loc": ("path", name),
                    "msg": f"Input should be less than or equal to {MAX_ID}",
                    "input": raw,
                    "ctx": {"le": MAX_ID},
                }
            ]
        )
    return value


def path_doc(name: str, description: str) -> dict[str, object]:
    """The OpenAPI entry of a path id parsed by ``path_id``."""
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ID},
    }


ERROR_DESCRIPTIONS = {
    400: "Malformed JSON body.",
    404: "Unknown track (or route).",
    408: "The request body did not arrive in time.",
    413: "The request body is too large.",
    422: "A parameter or body field is missing, of the wrong type or out of range.",
    503: "A backend is unavailable or timed out (Redis), or listen events are not being "
    "delivered to the broker.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses`` for the error statuses a route can answer, in the one error
    shape (services/api/errors.py)."""
    return {
        status: {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[status]}
        for status in statuses
    }
