"""``GET /track/{id}``: catalog lookup, as in botify."""

from __future__ import annotations

from fastapi import APIRouter, Request

from services.api.deps import RuntimeDep
from services.api.wire import TrackResponse, error_responses, path_doc, path_id

router = APIRouter(tags=["catalog"])

# How many same-artist neighbours /track lists (the original listed a model's neighbours).
NEIGHBOURS = 10


@router.get(
    "/track/{track}",
    response_model=TrackResponse,
    responses=error_responses(404, 422),
    openapi_extra={"parameters": [path_doc("track", "A catalog track id.")]},
)
async def get_track(request: Request, rt: RuntimeDep) -> TrackResponse:
    """A catalog track and up to ten other tracks by its artist."""
    # Parsed by hand, as /next's user is: strictly decimal, no sign or underscores.
    track = path_id(request.path_params["track"], "track")
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
