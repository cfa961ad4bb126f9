"""The driver against a small botify-protocol server (FastAPI on uvicorn, in a thread).

The server serves the platform's Random recommender exactly as the API would: it keeps each
user's session (tracks played or served) and closes it on /last. So the driver's sessions
must match ``simulate_in_process`` against the same recommender, episode for episode.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from botify.recommenders import RecommenderContext, RecommendRequest, build_recommender
from botify.state import UserState
from botify_cli.processes import free_port
from botify_sim import driver
from botify_sim.driver import DriveSummary, drive
from botify_sim.simulate import simulate_in_process
from botify_sim.user_model import Session, session_rng
from botify_sim.world import World, save_world
from tests.unit.sim.worlds import small_world, user_config

SEED = 21
RECOMMENDER_SEED = 5


class BotifyServer:
    """Records (user, route, body, answer) in arrival order; fails users in ``failing``."""

    def __init__(self, world: World) -> None:
        context = RecommenderContext(world.catalog, seed=RECOMMENDER_SEED)
        self.recommender = build_recommender("random", context)
        self.log: list[tuple[int, str, dict[str, object], int | None]] = []
        self.sessions: dict[int, set[int]] = defaultdict(set)
        self.failing: set[int] = set()
        app = FastAPI()
        app.post("/next/{user}")(self.next)
        app.post("/last/{user}")(self.last)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)

    async def next(self, user: int, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        if user in self.failing:
            return JSONResponse({"error": "boom"}, status_code=500)
        played = self.sessions[user]
        played.add(body["track"])
        req = RecommendRequest(user, body["track"], body["time"], frozenset(played))
        track = self.recommender.recommend(req, UserState(user)).track
        played.add(track)
        self.log.append((user, "next", body, track))
        return JSONResponse({"user": user, "track": track})

    async def last(self, user: int, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        self.sessions.pop(user, None)
        self.log.append((user, "last", body, None))
        return JSONResponse({"user": user})

    def by_user(self) -> dict[int, list[tuple[str, dict[str, object], int | None]]]:
        out: dict[int, list[tuple[str, dict[str, object], int | None]]] = defaultdict(list)
        for user, route, body, answer in self.log:
            out[user].append((route, body, answer))
        return dict(out)

    def reset(self) -> None:
        self.log.clear()
        self.sessions.clear()
        self.failing.clear()


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_world(small_world(), tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def server() -> Iterator[BotifyServer]:
    s = BotifyServer(small_world())
    thread = threading.Thread(target=s.server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not s.server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield s
    s.server.should_exit = True
    thread.join(timeout=10)


def run(server: BotifyServer, world_dir: Path, episodes: int, processes: int) -> DriveSummary:
    server.reset()
    return drive(server.url, world_dir, small_world(), episodes, processes, SEED, user_config())


def run_paced(
    server: BotifyServer,
    world_dir: Path,
    episodes: int,
    processes: int,
    rate: float,
    behind: list[float],
) -> DriveSummary:
    server.reset()
    config = user_config()
    return drive(
        server.url,
        world_dir,
        small_world(),
        episodes,
        processes,
        SEED,
        config,
        rate=rate,
        on_behind=behind.append,
    )


def test_sessions_follow_the_protocol_exactly(server: BotifyServer, world_dir: Path) -> None:
    summary = run(server, world_dir, 60, 2)
    assert summary.sessions == 60 and summary.failed_sessions == 0
    w, config = small_world(), user_config()
    logs = server.by_user()
    # Each user's sessions ran in episode order; rebuild each one and compare call by call.
    for user, results in _episodes_by_user(summary).items():
        calls = logs[user]
        for episode in results:
            session = Session(w, user, session_rng(SEED, episode), config)
            route, body, answer = calls.pop(0)
            assert (route, body) == ("next", {"track": session.first_track, "time": 1.0})
            while True:
                assert answer is not None
                time_ = session.listen(answer)
                route, body, next_answer = calls.pop(0)
                assert body == {"track": answer, "time": time_}
                assert type(body["track"]) is int and type(body["time"]) is float
                if route == "last":
                    assert session.done
                    break
                assert route == "next" and not session.done
                answer = next_answer
        assert calls == []
    assert summary.requests == len(server.log)


def test_driver_matches_the_in_process_simulation(server: BotifyServer, world_dir: Path) -> None:
    summary = run(server, world_dir, 80, 2)
    w = small_world()
    context = RecommenderContext(w.catalog, seed=RECOMMENDER_SEED)
    local = simulate_in_process(build_recommender("random", context), w, 80, SEED, user_config())
    assert summary.mean_time_per_session == pytest.approx(local.mean_time, abs=1e-12)
    assert summary.mean_tracks_per_session == pytest.approx(local.mean_tracks, abs=1e-12)


def test_same_seed_gives_the_same_sessions_whatever_the_processes(
    server: BotifyServer, world_dir: Path
) -> None:
    first = run(server, world_dir, 50, 2)
    log_first = server.by_user()
    again = run(server, world_dir, 50, 2)
    assert server.by_user() == log_first
    one = run(server, world_dir, 50, 1)
    assert server.by_user() == log_first
    assert first.episodes == again.episodes == one.episodes
    assert [e.episode for e in first.episodes] == list(range(50))


def test_progress_reaches_the_parent(server: BotifyServer, world_dir: Path) -> None:
    server.reset()
    seen: list[int] = []
    drive(server.url, world_dir, small_world(), 40, 2, SEED, user_config(), seen.append)
    assert sum(seen) == 40 and all(n > 0 for n in seen)


def test_failing_sessions_are_counted_not_fatal(server: BotifyServer, world_dir: Path) -> None:
    server.reset()
    users = [e.user for e in run(server, world_dir, 30, 2).episodes]
    server.failing.add(users[0])
    summary = drive(server.url, world_dir, small_world(), 30, 2, SEED, user_config())
    failed = [e for e in summary.episodes if e.error]
    assert {e.user for e in failed} == {users[0]}
    assert summary.failed_sessions == users.count(users[0])
    assert summary.sessions == 30 - len(failed)
    assert failed[0].error is not None and "500" in failed[0].error


def test_an_unreachable_api_fails_every_session_quickly(world_dir: Path) -> None:
    started = time.monotonic()
    url = f"http://127.0.0.1:{free_port()}"
    summary = drive(url, world_dir, small_world(), 20, 2, SEED, user_config())
    assert summary.sessions == 0 and summary.failed_sessions == 20
    assert all("Connection" in e for e in summary.errors)
    assert time.monotonic() - started < 30


def test_a_worker_that_cannot_start_fails_its_episodes(tmp_path: Path) -> None:
    summary = drive("http://127.0.0.1:1", tmp_path, small_world(), 10, 2, SEED, user_config())
    assert summary.sessions == 0 and summary.failed_sessions == 10 and summary.episodes == ()


@pytest.mark.slow
def test_paced_traffic_holds_its_rate_and_plays_the_same_sessions(
    server: BotifyServer, world_dir: Path
) -> None:
    unpaced = run(server, world_dir, 60, 2)
    started = time.monotonic()
    behind: list[float] = []
    paced = run_paced(server, world_dir, 60, 2, 30.0, behind)
    # Episode 59 may not start before 59/30 s after the origin: pacing really waits.
    assert paced.elapsed_s >= 59 / 30
    assert time.monotonic() - started >= 59 / 30
    assert paced.rate == 30.0 and not paced.behind and behind == []
    assert paced.achieved_rate == pytest.approx(30.0, rel=0.03)
    assert paced.start_lag_quantile(0.95) < 0.5
    # The pace changes when sessions run, not what they are.
    strip = [(e.episode, e.user, e.value, e.tracks, e.requests) for e in paced.episodes]
    assert strip == [(e.episode, e.user, e.value, e.tracks, e.requests) for e in unpaced.episodes]


@pytest.mark.slow
def test_traffic_that_cannot_hold_its_rate_is_reported_behind(
    server: BotifyServer, world_dir: Path
) -> None:
    summary = run_paced(server, world_dir, 400, 1, 100_000.0, [])
    assert summary.sessions == 400
    assert summary.behind and summary.achieved_rate < 100_000
    assert summary.start_lag_quantile(1.0) > 0


@pytest.mark.slow
def test_a_driver_that_cannot_hold_its_rate_warns_while_it_runs(
    server: BotifyServer, world_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The warning fires from the parent's polling loop once a worker is BEHIND_S late; a
    # lower threshold (read in this process) lets a short run cross it.
    monkeypatch.setattr(driver, "BEHIND_S", 0.2)
    behind: list[float] = []
    summary = run_paced(server, world_dir, 400, 1, 100_000.0, behind)
    assert summary.behind
    assert behind and all(lag > 0.2 for lag in behind)
    # At most one warning per BEHIND_REPORT_S, however long the run stays behind.
    assert len(behind) <= 1 + summary.elapsed_s / driver.BEHIND_REPORT_S


@pytest.mark.slow
def test_botify_sim_prints_the_achieved_rate_against_its_target(
    server: BotifyServer, world_dir: Path
) -> None:
    from typer.testing import CliRunner

    from botify_cli.main import app

    server.reset()
    args = ["sim", "--api", server.url, "--world", str(world_dir), "--episodes", "30"]
    result = CliRunner().invoke(app, [*args, "--rate", "15", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "(target 15)" in result.output and "start lag" in result.output
    bad = CliRunner().invoke(app, [*args, "--rate", "-1"])
    assert bad.exit_code == 2 and "--rate must be" in bad.output
    assert "Traceback" not in bad.output


def test_a_rate_must_be_a_positive_number(world_dir: Path) -> None:
    for rate in (0.0, -2.0, float("nan")):
        with pytest.raises(ValueError, match="rate"):
            drive("http://127.0.0.1:1", world_dir, small_world(), 1, 1, SEED, rate=rate)


def _episodes_by_user(summary: DriveSummary) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for e in summary.episodes:
        out[e.user].append(e.episode)
    return dict(out)
