"""``DeliveringProducer.send_batch`` hands records over in one call and drops none."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, Producer

from botify.errors import BackendUnavailableError
from botify.kafka import DeliveringProducer
from botify.kafka import delivering as delivering_module
from botify.settings import KafkaSettings
from botify_cli.processes import free_port


class QueueOfTen:
    """librdkafka's produce_batch with a local queue of ten records and no broker."""

    def __init__(self) -> None:
        self.queued: list[tuple[bytes | None, bytes | None]] = []

    def produce_batch(self, topic, messages, on_delivery):  # type: ignore[no-untyped-def]
        for m in messages:
            if len(self.queued) < 10:
                self.queued.append((m["key"], m["value"]))
            else:
                m["_error"] = "queue full"
        return min(len(messages), 10)

    def produce(self, topic, value, key, on_delivery, headers):  # type: ignore[no-untyped-def]
        if len(self.queued) >= 10:
            raise BufferError("queue full")
        self.queued.append((key, value))

    def poll(self, timeout: float) -> int:
        if timeout and self.queued:  # the broker takes one record while we wait
            self.queued.pop(0)
        return 0

    def purge(self) -> None:
        self.queued.clear()


def producer(fake: QueueOfTen) -> DeliveringProducer:
    p = DeliveringProducer(KafkaSettings(bootstrap_servers="127.0.0.1:1"), "test")
    p._producer.close()  # the librdkafka client the fake replaces: stopped, not left retrying
    p._producer = fake  # type: ignore[assignment]
    return p


def test_records_the_queue_refused_are_sent_one_by_one_as_it_drains() -> None:
    fake = QueueOfTen()
    records = [(b"%d" % i, b"v%d" % i) for i in range(12)]
    producer(fake).send_batch("t", records)
    # Ten went in the batch; the two refused waited for room (two taken by the "broker").
    assert fake.queued == records[2:]


def test_a_queue_that_stays_full_fails_the_send_instead_of_dropping_records() -> None:
    fake = QueueOfTen()
    fake.poll = lambda timeout: 0  # type: ignore[method-assign]  # the broker takes nothing
    with pytest.raises(BackendUnavailableError, match="buffer stays full"):
        producer(fake).send_batch("t", [(b"%d" % i, b"v") for i in range(25)])


def test_a_send_after_close_is_a_backend_unavailable_error_not_a_crash() -> None:
    p = DeliveringProducer(KafkaSettings(bootstrap_servers="127.0.0.1:1"), "test")
    p.close()
    for use in (
        lambda: p.send("t", [(b"k", b"v")]),
        lambda: p.send_batch("t", [(b"k", b"v")]),
        lambda: p.deliver_each("t", [(b"k", b"v", [])]),
        p.flush,
    ):
        with pytest.raises(BackendUnavailableError, match="shut down"):
            use()


def test_a_late_fatal_error_of_a_replaced_producer_does_not_replace_its_successor() -> None:
    p = DeliveringProducer(KafkaSettings(bootstrap_servers="127.0.0.1:1"), "test")
    try:
        first = p._producer
        p._fatal = True
        p._renew_if_fatal()
        assert p._producer is not first
        fenced = KafkaError(KafkaError._FENCED, "fenced", fatal=True)
        p._on_error(fenced, 1)  # the replaced (first) producer's error, served late
        assert not p._fatal
        p._on_error(fenced, 2)
        assert p._fatal
    finally:
        p.close()


def test_a_second_close_is_safe() -> None:
    p = DeliveringProducer(KafkaSettings(bootstrap_servers="127.0.0.1:1"), "test")
    p.close()
    p.close()


def test_close_against_an_unreachable_broker_is_bounded_and_logs_what_it_gave_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", flush_timeout_s=0.5)
    p = DeliveringProducer(settings, "test")
    p.send("t", [(b"k", b"v")] * 3)
    started = time.monotonic()
    p.close()
    assert time.monotonic() - started < settings.flush_timeout_s + 15  # generous margin
    assert "3 records were not delivered before shutdown" in caplog.text


def test_replacing_a_fenced_producer_closes_the_old_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed: list[Producer] = []

    class Tracking(Producer):  # type: ignore[misc]
        def close(self, *args: object) -> object:
            closed.append(self)
            return super().close(*args)

    monkeypatch.setattr(delivering_module, "Producer", Tracking)
    p = DeliveringProducer(KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}"), "test")
    try:
        old = p._producer
        p.send("t", [(b"k", b"v")])
        p._fatal = True
        p._renew_if_fatal()
        assert closed == [old] and p._producer is not old
    finally:
        p.close()
