"""``GET /track/{id}``: catalog lookup, as in botify."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from botify.events import MAX_ID
from services.api.deps import RuntimeDep
from services.api.wire import TrackResponse

router = APIRouter(tags=["catalog"])

# How many same-artist neighbours /track lists (the original listed a model's neighbours).
NEIGHBOURS = 10


@router.get("/track/{track}", response_model=TrackResponse)
async def get_track(track: Annotated[int, Path(ge=0, le=MAX_ID)], rt: RuntimeDep) -> TrackResponse:
    catalog = rt.router.catalog
    found = catalog.get(track)
    neighbours = [t for t in catalog.tracks_by_artist(found.artist) if t != track][:NEIGHBOURS]
    rt.metrics.requests.labels("/track/{track}", "200").inc()
    return TrackResponse(
        track=found.track,
        artist=found.artist,
        title=found.title,
        genre=found.genre,
        recommendations=neighbours,
    )
