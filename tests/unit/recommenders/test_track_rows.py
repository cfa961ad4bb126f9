"""TrackRows: the same rows from its direct table (ids near 0..n) and its sorted search
(sparse or negative ids), for ids it has, ids it lacks, and any shape."""

from __future__ import annotations

import numpy as np
import pytest

from botify.recommenders.track_rows import TrackRows


@pytest.mark.parametrize(
    "ids",
    [
        np.array([5, 0, 3, 9, 2], np.int64),  # dense: a direct table
        np.array([5, 0, 3, 2**40, 2], np.int64),  # one huge id: a sorted search
        np.array([5, -4, 3, 9, 2], np.int64),  # a negative id: a sorted search
        np.empty(0, np.int64),
    ],
    ids=["dense", "huge", "negative", "empty"],
)
def test_every_id_gets_its_row_and_every_other_id_minus_one_in_any_shape(ids: np.ndarray) -> None:
    rows = TrackRows(ids)
    reference = {int(t): r for r, t in enumerate(ids)}
    wanted = np.array(
        [[5, 0, 3, 9, 2, -4], [2**40, 1, -1, 7, 10**6, np.iinfo(np.int64).max]], np.int64
    )
    expected = [[reference.get(int(t), -1) for t in row] for row in wanted]
    assert rows(wanted).tolist() == expected
    assert rows(wanted[0]).tolist() == expected[0]
    # A column slice is not contiguous: still the same answers.
    assert rows(wanted[:, 1]).tolist() == [expected[0][1], expected[1][1]]
