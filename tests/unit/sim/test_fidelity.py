"""The fidelity check: the course's traffic logged as the trainer's examples, and the course's
recommenders trained on it and served."""

from __future__ import annotations

import pytest

from botify_sim.fidelity import PUBLISHED, course_log, fidelity, within
from botify_sim.simulate import episode_users
from tests.unit.sim.worlds import small_config, small_world

pytestmark = pytest.mark.unit


def test_the_course_log_holds_one_example_per_recommendation_of_its_two_arms() -> None:
    world, config = small_world(), small_config()
    log = course_log(world, 40, 9, config)
    users = episode_users(world, 40, 9).tolist()
    assert set(log["user"].unique().to_list()) <= set(users)
    for row in log.select("user", "recommender").unique().iter_rows():
        assert row[1] == ("random" if row[0] % 2 == 0 else "sticky_artist")
    assert log["time"].is_between(0.0, 1.0).all()
    # Within a user's rows, each example's context is the previous example's track unless
    # a new session starts (its context is then its start track).
    for (_user,), part in log.group_by(["user"]):
        rows = part.sort("timestamp").to_dicts()
        for before, after in zip(rows, rows[1:], strict=False):
            if (
                after["session_start"] == before["session_start"]
                and after["context"] != after["session_start"]
            ):
                assert after["context"] == before["track"]
    assert course_log(world, 40, 9, config).equals(log)  # seeded


@pytest.mark.slow
def test_the_five_course_recommenders_are_trained_served_and_compared() -> None:
    rows = fidelity(small_config(), 600, 150)
    assert [r.recommender for r in rows] == list(PUBLISHED)
    by_name = {r.recommender: r for r in rows}
    assert all(r.summary.sessions == 150 for r in rows)
    assert by_name["sticky_artist"].summary.mean_time > by_name["random"].summary.mean_time
    assert by_name["contextual"].ratio == pytest.approx(
        by_name["contextual"].summary.mean_time / 5.50
    )
    assert within(rows, 100.0) and not within(rows, 0.0)


def test_hidden_neighbours_are_each_tracks_nearest_by_the_hidden_embeddings() -> None:
    import numpy as np

    from botify.artifacts import TRACK_NEIGHBOURS
    from botify_sim.fidelity import hidden_neighbours

    world = small_world()
    lists = hidden_neighbours(world, 5).arrays[TRACK_NEIGHBOURS]
    scores = world.embeddings @ world.embeddings[7]
    scores[7] = -np.inf
    best = world.track_ids[np.argsort(-scores, kind="stable")[:5]]
    assert lists.shape == (len(world.track_ids), 5)
    assert set(lists[7].tolist()) == set(best.tolist())
