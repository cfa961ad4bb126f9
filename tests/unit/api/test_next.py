from __future__ import annotations

from pathlib import Path

import jsonschema
import orjson
import pytest
from fastapi.testclient import TestClient

from botify.events import encode_listen_event
from botify.experiments import ExperimentSplit
from tests.unit.api.conftest import RecordingPublisher
from tests.unit.test_events import listen_event_schema


def play_session(client: TestClient, user: int, start: int, steps: int) -> list[int]:
    served, track = [], start
    for _ in range(steps):
        resp = client.post(f"/next/{user}", json={"track": track, "time": 0.9})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["user"] == user
        track = body["track"]
        served.append(track)
    assert client.post(f"/last/{user}", json={"track": track, "time": 0.4}).json() == {"user": user}
    return served


def test_next_answers_with_a_catalog_track_in_botify_shape(client: TestClient) -> None:
    resp = client.post("/next/7", json={"track": 3, "time": 1.0})
    assert resp.status_code == 200
    assert set(resp.json()) == {"user", "track"}
    assert 0 <= resp.json()["track"] < 200


@pytest.mark.parametrize("user", [0, 1, 2, 5, 11, 1984])
def test_no_track_repeats_within_a_session_before_the_stream_catches_up(
    client: TestClient, user: int
) -> None:
    # The in-memory store's stream state is never updated here: only the API's own session
    # list can prevent repeats, as when requests outrun the stream processor.
    served = play_session(client, user, start=3, steps=60)
    assert len(set(served)) == len(served)
    assert 3 not in served


def test_a_new_session_may_serve_tracks_of_the_previous_one(client: TestClient) -> None:
    first = play_session(client, 11, start=3, steps=150)
    second = play_session(client, 11, start=3, steps=150)
    # 150 of 200 tracks each time: the second session must reuse some, so /last reset it.
    assert set(first) & set(second)


def test_each_request_publishes_one_listen_event_valid_against_the_schema(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    served = play_session(client, 1984, start=5, steps=3)
    events = publisher.events
    assert [e.message for e in events] == ["next", "next", "next", "last"]
    assert [e.track for e in events] == [5, *served]
    assert [e.recommendation for e in events] == [*served, None]
    schema = listen_event_schema()
    for e in events:
        jsonschema.validate(orjson.loads(encode_listen_event(e)), schema)
        assert e.user == 1984 and e.latency >= 0
        assert e.key == b"1984"


def test_events_carry_every_experiment_arm_and_the_serving_recommender(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    routing = ExperimentSplit(
        "RECOMMENDERS", 3, {"C": "random", "T1": "sticky_artist", "T2": "top_pop"}
    )
    aa = ExperimentSplit("AA", 2)
    for user in range(30):
        client.post(f"/next/{user}", json={"track": 1, "time": 1.0})
    for e in publisher.events:
        assert e.experiments == {"AA": aa.arm(e.user), "RECOMMENDERS": routing.arm(e.user)}
        assert e.recommender == routing.recommender_for(e.user)
    assert {e.recommender for e in publisher.events} == {"random", "sticky_artist", "top_pop"}


def test_sticky_artist_arm_serves_the_previous_tracks_artist(client: TestClient) -> None:
    routing = ExperimentSplit(
        "RECOMMENDERS", 3, {"C": "random", "T1": "sticky_artist", "T2": "top_pop"}
    )
    user = next(u for u in range(100) if routing.arm(u) == "T1")
    catalog = client.app.state.runtime.router.catalog  # type: ignore[attr-defined]
    artist = catalog.artist_of(3)
    rec = client.post(f"/next/{user}", json={"track": 3, "time": 1.0}).json()["track"]
    assert catalog.artist_of(rec) == artist


def test_same_requests_give_same_answers(client: TestClient) -> None:
    a = play_session(client, 42, start=9, steps=10)
    b = play_session(client, 42, start=9, steps=10)
    assert a == b


def test_track_lookup_returns_botify_fields(client: TestClient) -> None:
    body = client.get("/track/3").json()
    assert {"track", "artist", "title", "recommendations"} <= set(body)
    assert body["track"] == 3 and 3 not in body["recommendations"]


def test_metrics_count_requests_per_route_without_user_labels(client: TestClient) -> None:
    play_session(client, 1984, start=5, steps=2)
    text = client.get("/metrics").text
    assert 'botify_api_requests_total{route="/next/{user}",status="200"} 2.0' in text
    assert 'botify_api_requests_total{route="/last/{user}",status="200"} 1.0' in text
    assert "botify_api_request_duration_seconds_bucket" in text
    assert "1984" not in text
    # Two recommendations were served; /last serves none.
    served = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("botify_api_recommendations_total{")
    ]
    assert sum(served) == 2.0


def test_the_api_refuses_to_start_with_an_experiment_name_events_cannot_carry(
    tmp_path: Path,
) -> None:
    from botify.errors import ConfigError
    from botify.settings import ExperimentsSettings, Settings
    from services.api.app import build_router

    toml = tmp_path / "experiments.toml"
    toml.write_text('[[experiment]]\nname = "ÜNICODE"\ngroups = 2\n')
    settings = Settings(experiments=ExperimentsSettings(path=toml))
    with pytest.raises(ConfigError, match="cannot be logged"):
        build_router(settings)
