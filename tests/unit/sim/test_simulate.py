from __future__ import annotations

from dataclasses import dataclass, field

from botify.recommenders import (
    Recommendation,
    Recommender,
    RecommenderContext,
    RecommendRequest,
    build_recommender,
)
from botify.state import UserState
from botify_sim.simulate import episode_users, play_session, simulate_in_process
from botify_sim.user_model import Session, session_rng
from tests.unit.sim.worlds import small_world, user_config


@dataclass
class Recording:
    """Wraps a recommender and keeps every request it was sent and every answer."""

    inner: Recommender
    requests: list[RecommendRequest] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    name: str = "recording"

    def recommend(self, request: RecommendRequest, state: UserState) -> Recommendation:
        self.requests.append(request)
        answer = self.inner.recommend(request, state)
        self.answers.append(answer.track)
        return answer


def test_requests_carry_the_previous_track_its_time_and_the_session_so_far() -> None:
    w, config = small_world(), user_config()
    rec = Recording(build_recommender("sticky_artist", RecommenderContext(w.catalog, seed=1)))
    s = Session(w, 5, session_rng(1, 0), config)
    play_session(s, rec)
    # The same session replayed by hand gives the times the requests should carry.
    replay = Session(w, 5, session_rng(1, 0), config)
    times = [replay.listen(t) for t in rec.answers]
    assert replay.value == s.value and replay.done and s.done
    first = rec.requests[0]
    assert (first.user, first.track, first.time) == (5, s.first_track, 1.0)
    assert first.played == {s.first_track}
    for i, req in enumerate(rec.requests[1:]):
        assert (req.user, req.track, req.time) == (5, rec.answers[i], times[i])
        assert req.played == {s.first_track, *rec.answers[: i + 1]}
        # As the API sends them: the session in order, every listen with its time.
        assert req.session == tuple(dict.fromkeys((s.first_track, *rec.answers[: i + 1])))
        heard = zip(rec.answers[: i + 1], times[: i + 1], strict=True)
        assert req.listens == ((s.first_track, 1.0), *heard)
    assert len(rec.requests) == s.recommendations


def test_simulate_in_process_is_reproducible() -> None:
    w = small_world()
    ctx = RecommenderContext(w.catalog, seed=2)
    a = simulate_in_process(build_recommender("random", ctx), w, 300, seed=11)
    b = simulate_in_process(build_recommender("random", ctx), w, 300, seed=11)
    c = simulate_in_process(build_recommender("random", ctx), w, 300, seed=12)
    assert a == b
    assert a != c
    assert a.sessions == 300 and a.mean_tracks > 2


def test_episode_users_are_spread_over_all_users() -> None:
    w = small_world()
    users = episode_users(w, 3000, seed=1)
    assert users.min() >= 0 and users.max() < w.users
    assert len(set(users.tolist())) > 0.9 * w.users
    assert (users == episode_users(w, 3000, seed=1)).all()


def test_sticky_artist_beats_random_on_a_small_world() -> None:
    w = small_world()
    ctx = RecommenderContext(w.catalog, seed=0)
    random = simulate_in_process(build_recommender("random", ctx), w, 600, seed=1)
    sticky = simulate_in_process(build_recommender("sticky_artist", ctx), w, 600, seed=1)
    assert 1.0 < random.mean_time < sticky.mean_time
    assert sticky.mean_time - random.mean_time > 3 * (random.sem_time + sticky.sem_time)
