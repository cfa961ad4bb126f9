from __future__ import annotations

from confluent_kafka import TopicPartition

from services.stream.agents import Record
from services.stream.app import next_offsets


def test_the_offsets_stored_after_a_batch_are_one_past_each_partitions_last_record() -> None:
    records = [Record("t", p, o, None, b"") for p, o in ((0, 5), (1, 7), (0, 6), (1, 9))]
    stored = {(tp.topic, tp.partition): tp.offset for tp in next_offsets(records)}
    assert stored == {("t", 0): 7, ("t", 1): 10}
    assert all(isinstance(tp, TopicPartition) for tp in next_offsets(records))
