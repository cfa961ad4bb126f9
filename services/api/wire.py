"""HTTP shapes, wire-compatible with the original botify service."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from botify.events import MAX_ID

TrackId = Annotated[int, Field(ge=0, le=MAX_ID, description="A catalog track id.")]


class NextRequest(BaseModel):
    """The track just played and the fraction of it listened to."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

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


class DeliveryHealth(BaseModel):
    """Whether listen events reach the broker (not merely whether it answers)."""

    ok: bool
    detail: str = ""
    pending: int = Field(description="Events handed to the producer and not yet delivered.")
    pending_age_s: float = Field(description="How long the oldest pending event has waited.")
    failed: int = Field(description="Events whose delivery failed since the start.")
    failing: bool = Field(description="The latest deliveries failed, none succeeded since.")
    producers_rebuilt: int = Field(description="Producers rebuilt after a fence or a stall.")


class HealthResponse(BaseModel):
    status: str
    redis: ComponentHealth
    delivery: DeliveryHealth
