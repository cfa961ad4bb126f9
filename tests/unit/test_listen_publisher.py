"""ListenPublisher's rebuild of a fenced or stuck producer, with librdkafka but no broker
(a closed port): events stay queued, so what a rebuild carries over can be counted."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable

import pytest
from confluent_kafka import KafkaError, Producer

from botify import kafka
from botify.errors import BackendUnavailableError
from botify.kafka import ListenPublisher
from botify.kafka import publisher as publisher_module
from botify.settings import KafkaSettings
from botify_cli.processes import free_port
from tests.factories import listen


def nowhere(**kw: object) -> KafkaSettings:
    config: dict[str, object] = {"flush_timeout_s": 0.5} | kw
    return KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", **config)  # type: ignore[arg-type]


def test_a_fatal_error_rebuilds_the_producer_and_carries_its_events_over() -> None:
    publisher = ListenPublisher(nowhere(), "test", poll_interval=0.01)
    try:
        for user in range(5):
            publisher.publish(listen(user=user))
        publisher._fatal = "_FENCED: as librdkafka's error callback reports it"
        deadline = time.monotonic() + 5
        while publisher.status.producers_rebuilt == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert publisher.status.producers_rebuilt == 1
        assert publisher.stats.carried_over == 5
        # Still outstanding (nothing is lost, nothing counted as failed): on the new producer.
        assert publisher.pending() == 5 and publisher.stats.failed == 0
    finally:
        publisher.close()


def test_a_stuck_producer_is_reported_then_rebuilt_with_backoff() -> None:
    publisher = ListenPublisher(
        nowhere(rebuild_after_s=0.3), "test", poll_interval=0.01, stall_s=0.2
    )
    try:
        publisher.publish(listen(user=1))
        deadline = time.monotonic() + 5
        while publisher.status.producers_rebuilt < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        status = publisher.status
        assert not status.ok and status.pending == 1 and status.pending_age_s >= 0.6
        # The second rebuild waited for twice the first's age.
        assert status.producers_rebuilt == 2
        assert "waited" in status.detail
    finally:
        publisher.close()


def test_a_full_buffer_fails_at_once_on_the_event_loop_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class QueueOfOne(Producer):  # type: ignore[misc]
        """A producer whose queue holds one event."""

        def __init__(self, config: dict[str, object]) -> None:
            super().__init__(config | {"queue.buffering.max.messages": 1})

    monkeypatch.setattr(publisher_module, "Producer", QueueOfOne)
    publisher = ListenPublisher(nowhere(produce_retries=5), "test")
    try:
        publisher.publish(listen(user=1))
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match="buffer is full"):
            publisher.publish(listen(user=2))
        assert time.monotonic() - started < 0.01
        assert publisher.stats.buffer_full == 1
    finally:
        publisher.close()


def test_an_event_a_rebuilt_producer_never_reported_is_counted_under_a_bounded_label(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[Producer] = []

    class Unpurgeable(Producer):  # type: ignore[misc]
        """Ignores purge while wedged: its events never report, as a wedged librdkafka's
        would not."""

        wedged = True

        def __init__(self, config: dict[str, object]) -> None:
            super().__init__(config)
            built.append(self)

        def purge(self, *args: object, **kwargs: object) -> None:
            if not self.wedged:
                super().purge(*args, **kwargs)

    monkeypatch.setattr(publisher_module, "Producer", Unpurgeable)
    labels: list[str] = []
    port = free_port()
    settings = KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{port}", flush_timeout_s=0.1, rebuild_after_s=0.3
    )
    publisher = ListenPublisher(settings, "test", labels.append, poll_interval=0.01, stall_s=0.2)
    try:
        publisher.publish(listen(user=1))
        deadline = time.monotonic() + 5
        while not labels and time.monotonic() < deadline:
            time.sleep(0.02)
        # One event, and still a label, not "1 events stuck in a producer that was rebuilt".
        assert labels == [kafka.STUCK_IN_REBUILT]
        assert publisher.stats.failed == 1
    finally:
        Unpurgeable.wedged = False
        publisher.close()
        # The rebuilt-away producers still hold their stuck event: stopped here, not left
        # reconnecting to the closed port until the process ends.
        for producer in built:
            with contextlib.suppress(RuntimeError):  # closed already (by close() or a rebuild)
                producer.purge()
                producer.close()


async def test_close_counts_the_events_it_gives_up_and_answers_their_waiters_at_once() -> None:
    labels: list[str] = []
    publisher = ListenPublisher(nowhere(), "test", labels.append, acked=True)
    closed = False
    try:
        waiting = asyncio.ensure_future(publisher.publish_acked(listen(user=1), timeout=60))
        await asyncio.sleep(0.05)  # queued, with no broker to take it
        started = time.monotonic()
        await asyncio.to_thread(publisher.close)
        closed = True
        with pytest.raises(BackendUnavailableError, match="did not take"):
            await asyncio.wait_for(waiting, 10)  # answered by close, not by the 60 s deadline
        assert time.monotonic() - started < 10
        assert publisher.stats.failed == 1 and labels == [kafka.GIVEN_UP_AT_SHUTDOWN]
        assert publisher.stats.unacknowledged == 0
    finally:
        if not closed:
            publisher.close()


def test_an_event_produced_while_the_producer_is_replaced_is_carried_over_not_a_500(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entered, closed = threading.Event(), threading.Event()

    class SlowFirstProduce(Producer):  # type: ignore[misc]
        """The first producer's produce stalls (up to 2 s) until the producer is closed:
        the window of an event-loop thread that took the producer just before a rebuild."""

        built = 0

        def __init__(self, config: dict[str, object]) -> None:
            super().__init__(config)
            SlowFirstProduce.built += 1
            self.first = SlowFirstProduce.built == 1

        def produce(self, *args: object, **kwargs: object) -> None:
            if self.first:
                entered.set()
                closed.wait(2)
            super().produce(*args, **kwargs)

        def close(self, *args: object) -> object:
            closed.set()
            return super().close(*args)

    monkeypatch.setattr(publisher_module, "Producer", SlowFirstProduce)
    publisher = ListenPublisher(nowhere(), "test", poll_interval=0.01)
    errors: list[BaseException] = []

    def publish() -> None:
        try:
            publisher.publish(listen(user=1))
        except BaseException as exc:
            errors.append(exc)

    try:
        thread = threading.Thread(target=publish)
        thread.start()
        assert entered.wait(5)
        publisher._fatal = "_FENCED: as librdkafka's error callback reports it"
        thread.join(10)
        deadline = time.monotonic() + 5
        while publisher.status.producers_rebuilt == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert errors == []
        # Produced on the old producer before the swap: carried over, not lost.
        assert publisher.stats.carried_over == 1 and publisher.pending() == 1
    finally:
        publisher.close()


def test_a_publish_after_close_is_a_backend_unavailable_error_not_a_crash() -> None:
    publisher = ListenPublisher(nowhere(), "test")
    publisher.close()
    with pytest.raises(BackendUnavailableError, match="shut down"):
        publisher.publish(listen(user=1))
    with pytest.raises(BackendUnavailableError, match="shut down"):
        publisher.flush()


def test_a_late_fatal_error_of_a_replaced_producer_does_not_rebuild_its_successor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    error_callbacks: list[Callable[[KafkaError], None]] = []

    class Recording(Producer):  # type: ignore[misc]
        def __init__(self, config: dict[str, object]) -> None:
            super().__init__(config)
            error_callbacks.append(config["error_cb"])  # type: ignore[arg-type]

    monkeypatch.setattr(publisher_module, "Producer", Recording)
    publisher = ListenPublisher(nowhere(), "test", poll_interval=0.01)
    try:
        publisher._fatal = "_FENCED: as librdkafka's error callback reports it"
        deadline = time.monotonic() + 5
        while publisher.status.producers_rebuilt == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert publisher.status.producers_rebuilt == 1 and len(error_callbacks) == 2
        fenced = KafkaError(KafkaError._FENCED, "fenced", fatal=True)
        error_callbacks[0](fenced)  # the old producer's queued error, served late
        assert publisher._fatal is None
        error_callbacks[1](fenced)  # the current one's still counts
        assert publisher._fatal is not None
    finally:
        publisher.close()


class Tracking(Producer):  # type: ignore[misc]
    """Records which producers were closed; ``wedged`` ones ignore purge (never drain)."""

    built: list[Tracking] = []
    wedged = False

    def __init__(self, config: dict[str, object]) -> None:
        super().__init__(config)
        self.closed = False
        Tracking.built.append(self)

    def purge(self, *args: object, **kwargs: object) -> None:
        if not Tracking.wedged:
            super().purge(*args, **kwargs)

    def close(self, *args: object) -> object:
        self.closed = True
        return super().close(*args)


@pytest.mark.parametrize("wedged", [False, True])
def test_a_rebuild_closes_the_old_producer_only_once_it_is_drained(
    monkeypatch: pytest.MonkeyPatch, wedged: bool
) -> None:
    monkeypatch.setattr(Tracking, "built", [])
    monkeypatch.setattr(Tracking, "wedged", wedged)
    monkeypatch.setattr(publisher_module, "Producer", Tracking)
    publisher = ListenPublisher(nowhere(flush_timeout_s=0.1), "test", poll_interval=0.01)
    try:
        publisher.publish(listen(user=1))
        publisher._fatal = "_FENCED: as librdkafka's error callback reports it"
        deadline = time.monotonic() + 5
        while publisher.status.producers_rebuilt == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert publisher.status.producers_rebuilt == 1
        old = Tracking.built[0]
        # Drained: stopped at once. Wedged: close() would wait for its event without end.
        assert old.closed is not wedged
    finally:
        Tracking.wedged = False
        publisher.close()
        for producer in Tracking.built:
            if not producer.closed:
                producer.purge()
                producer.close()


def test_a_second_close_is_safe() -> None:
    publisher = ListenPublisher(nowhere(), "test")
    publisher.publish(listen(user=1))
    publisher.close()
    publisher.close()
    assert publisher.stats.failed == 1


def test_close_against_an_unreachable_broker_is_bounded_and_counts_what_it_gave_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    labels: list[str] = []
    settings = nowhere()
    publisher = ListenPublisher(settings, "test", labels.append)
    for user in range(3):
        publisher.publish(listen(user=user))
    started = time.monotonic()
    publisher.close()
    # flush_timeout_s (0.5 s) to deliver, then at most a second for the purge's reports;
    # a generous margin for a loaded machine, far below librdkafka's message.timeout.ms.
    assert time.monotonic() - started < settings.flush_timeout_s + 15
    assert publisher.stats.failed == 3 and labels == [kafka.GIVEN_UP_AT_SHUTDOWN] * 3
    assert "3 events were not delivered before shutdown" in caplog.text
