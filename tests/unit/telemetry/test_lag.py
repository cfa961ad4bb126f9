from __future__ import annotations

from prometheus_client import CollectorRegistry

from botify.errors import BackendUnavailableError
from botify.kafka import PartitionLag
from botify.telemetry import ConsumerLagMonitor


class Source:
    def __init__(self, *answers: list[PartitionLag] | Exception) -> None:
        self.answers = list(answers)

    def read(self, group, topics, timeout=5.0):  # type: ignore[no-untyped-def]
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_lag_is_the_end_minus_the_committed_offset_never_negative() -> None:
    assert PartitionLag("t", 0, end=10, committed=4).lag == 6
    assert PartitionLag("t", 0, end=10, committed=None).lag == 10  # nothing committed yet
    # Tansu's end can trail a group that read a whole last batch: no lag, not a negative one.
    assert PartitionLag("t", 0, end=1, committed=10).lag == 0


def test_each_reading_sets_the_gauge_per_partition_and_a_failed_one_is_counted() -> None:
    registry = CollectorRegistry()
    source = Source(
        [PartitionLag("t", 0, 10, 4), PartitionLag("t", 1, 3, 3)],
        BackendUnavailableError("broker down"),
    )
    monitor = ConsumerLagMonitor(source, "g", ["t"], registry, 1.0)
    monitor.refresh()
    monitor.refresh()  # the failure keeps the last readings

    def get(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert get("botify_kafka_consumer_lag_records", group="g", topic="t", partition="0") == 6
    assert get("botify_kafka_consumer_lag_records", group="g", topic="t", partition="1") == 0
    assert get("botify_kafka_consumer_lag_read_errors_total", group="g") == 1
