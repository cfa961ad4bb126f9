from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from botify.events import encode_listen_event
from botify.experiments import ExperimentPlan, ExperimentSplit
from botify.state import StateConfig
from botify.storage import InMemoryUserStateStore
from services.stream.agents import ListenProcessor, Record, Retry
from services.stream.metrics import StreamMetrics
from tests.factories import listen
from tests.unit.stream.test_agents import RecordingTopic

PLAN = ExperimentPlan(
    (ExperimentSplit("AA", 2), ExperimentSplit("REC", 2, {"C": "random", "T1": "top_pop"}))
)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    got = registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


@pytest.fixture
def setup() -> tuple[CollectorRegistry, ListenProcessor]:
    registry = CollectorRegistry()
    proc = ListenProcessor(
        InMemoryUserStateStore(),
        RecordingTopic(),
        StateConfig(),
        observer=StreamMetrics(registry, PLAN),
    )
    return registry, proc


def records(user: int, events, start: int = 0) -> list[Record]:  # type: ignore[no-untyped-def]
    return [
        Record("t", 0, start + i, str(user).encode(), encode_listen_event(e))
        for i, e in enumerate(events)
    ]


def session(user: int, arm: str, rec: str, times: list[float]):  # type: ignore[no-untyped-def]
    exps = {"AA": "C", "REC": arm}
    *nexts, last = times
    return [listen(user=user, time=t, recommender=rec, experiments=exps) for t in nexts] + [
        listen(user=user, time=last, message="last", recommender=rec, experiments=exps)
    ]


def test_every_arm_series_exists_at_zero_before_any_event(setup) -> None:  # type: ignore[no-untyped-def]
    registry, _ = setup
    for exp, arm, rec in PLAN.arm_labels():
        labels = {"experiment": exp, "arm": arm, "recommender": rec}
        assert registry.get_sample_value("botify_experiment_sessions_total", labels) == 0.0
        assert registry.get_sample_value("botify_experiment_session_time_count", labels) == 0.0
    assert registry.get_sample_value("botify_stream_events_total", {"outcome": "dead_letter"}) == 0


async def test_sessions_and_their_time_are_counted_per_arm_once_even_when_replayed(setup) -> None:  # type: ignore[no-untyped-def]
    registry, proc = setup
    batch = records(1, session(1, "C", "random", [0.5, 0.25, 1.0])) + records(
        2, session(2, "T1", "top_pop", [0.5, 0.5]), start=10
    )
    await proc.handle_batch(batch)
    await proc.handle_batch(batch)  # redelivered: duplicates, counted as such only
    c = {"experiment": "REC", "arm": "C", "recommender": "random"}
    t1 = {"experiment": "REC", "arm": "T1", "recommender": "top_pop"}
    assert value(registry, "botify_experiment_sessions_total", **c) == 1
    assert value(registry, "botify_experiment_session_time_sum", **c) == 1.75
    assert value(registry, "botify_experiment_session_tracks_sum", **c) == 3
    assert value(registry, "botify_experiment_session_time_sum", **t1) == 1.0
    assert value(registry, "botify_experiment_listens_total", **c) == 3
    assert value(registry, "botify_experiment_listen_time_total", **c) == 1.75
    assert value(registry, "botify_experiment_recommendations_total", **c) == 2
    # The labelling experiment sees both sessions, split by the recommender that served.
    aa = {"experiment": "AA", "arm": "C"}
    assert value(registry, "botify_experiment_sessions_total", **aa, recommender="random") == 1
    assert value(registry, "botify_experiment_sessions_total", **aa, recommender="top_pop") == 1
    assert value(registry, "botify_stream_events_total", outcome="applied") == 5
    assert value(registry, "botify_stream_events_total", outcome="duplicate") == 5
    assert value(registry, "botify_stream_batch_size_records_count") == 2
    assert value(registry, "botify_stream_event_delay_seconds_count") == 5


async def test_a_record_whose_dead_letter_stays_undeliverable_is_counted_as_skipped() -> None:
    class DownTopic:
        async def send_many(self, records):  # type: ignore[no-untyped-def]
            return ["MSG_SIZE_TOO_LARGE"] * len(records)  # refused, even without its value

    registry = CollectorRegistry()
    proc = ListenProcessor(
        InMemoryUserStateStore(),
        DownTopic(),
        StateConfig(),
        Retry(first=0.001, cap=0.002),
        observer=StreamMetrics(registry, PLAN),
        retry_attempts=3,
    )
    assert await proc.handle(Record("t", 0, 0, b"1", b"{nope")) == "skipped"
    assert value(registry, "botify_stream_events_total", outcome="skipped") == 1
    assert value(registry, "botify_stream_events_total", outcome="dead_letter") == 0
    assert value(registry, "botify_stream_retries_total", step="dead_letter") == 3


async def test_a_dead_letter_is_counted(setup) -> None:  # type: ignore[no-untyped-def]
    registry, proc = setup
    await proc.handle(Record("t", 0, 0, b"1", b"{nope"))
    assert value(registry, "botify_stream_events_total", outcome="dead_letter") == 1
    assert value(registry, "botify_stream_events_total", outcome="applied") == 0


async def test_an_example_that_fails_validation_is_counted_in_the_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the real StreamMetrics: its counter once hid the observer method of the same
    name, and a skipped example raised TypeError in the worker."""
    from services.stream import agents
    from tests.unit.stream.test_examples import RecordingSink

    def refuse(example):  # type: ignore[no-untyped-def]
        raise ValueError("fails its schema")

    monkeypatch.setattr(agents, "encode_example", refuse)
    registry, store = CollectorRegistry(), InMemoryUserStateStore()
    proc = ListenProcessor(
        store,
        RecordingTopic(),
        StateConfig(),
        Retry(first=0.001, cap=0.002),
        observer=StreamMetrics(registry, PLAN),
        examples=RecordingSink(store),
    )
    first = encode_listen_event(listen(user=1, track=10, recommendation=11))
    then = encode_listen_event(listen(user=1, track=11))
    outcomes = await proc.handle_batch(
        [Record("t", 0, 0, b"1", first), Record("t", 0, 1, b"1", then)]
    )
    assert outcomes == ["applied", "applied"]
    assert value(registry, "botify_stream_examples_skipped_total") == 1


async def test_a_failed_batch_fold_is_counted_per_user(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.stream import agents

    def refuse(state, events, config):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug")

    monkeypatch.setattr(agents, "fold_listens", refuse)
    registry = CollectorRegistry()
    proc = ListenProcessor(
        InMemoryUserStateStore(),
        RecordingTopic(),
        StateConfig(),
        observer=StreamMetrics(registry, PLAN),
    )
    assert value(registry, "botify_stream_fold_fallbacks_total") == 0
    batch = records(1, [listen(user=1, track=1)]) + records(2, [listen(user=2, track=2)], 1)
    assert await proc.handle_batch(batch) == ["applied", "applied"]
    assert value(registry, "botify_stream_fold_fallbacks_total") == 2
