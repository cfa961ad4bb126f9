from __future__ import annotations

from confluent_kafka import TopicPartition

from services.stream.agents import Record
from services.stream.app import next_offsets, offsets_went_back


def test_the_offsets_stored_after_a_batch_are_one_past_each_partitions_last_record() -> None:
    records = [Record("t", p, o, None, b"") for p, o in ((0, 5), (1, 7), (0, 6), (1, 9))]
    stored = {(tp.topic, tp.partition): tp.offset for tp in next_offsets(records)}
    assert stored == {("t", 0): 7, ("t", 1): 10}
    assert all(isinstance(tp, TopicPartition) for tp in next_offsets(records))


def test_offsets_going_back_are_noticed_within_a_batch_and_against_the_last_one() -> None:
    def batch(*coords: tuple[int, int]) -> list[Record]:
        return [Record("t", p, o, None, b"") for p, o in coords]

    assert not offsets_went_back(batch((0, 5), (1, 2), (0, 6)), {0: 5, 1: 0})
    assert offsets_went_back(batch((0, 5), (0, 0)), {})  # a broker that starts again at 0
    assert offsets_went_back(batch((1, 3)), {1: 10})  # a replay from the committed offset
    assert not offsets_went_back(batch((2, 0)), {1: 10})  # a partition not seen before
