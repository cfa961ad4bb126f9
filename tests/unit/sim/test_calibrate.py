from __future__ import annotations

import pytest

from botify_sim import calibrate
from botify_sim.config import SimConfig
from botify_sim.simulate import SimSummary
from tests.unit.sim.worlds import small_config


def test_evaluate_ranks_the_baselines_on_a_small_world() -> None:
    results = calibrate.evaluate(small_config(), 400)
    assert set(results) == {"random", "sticky_artist", "top_pop"}
    assert results["random"].mean_time < results["sticky_artist"].mean_time


def test_fit_solves_for_scale_noise_and_mainstream_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in world where the three figures are linear in the three parameters and in
    # the seed; TopPop must be ranked from a course log of the asked size.
    logs: list[int | None] = []

    def evaluate(
        config: SimConfig, sessions: int, names: tuple[str, ...], log_sessions: int | None
    ) -> dict[str, SimSummary]:
        logs.append(log_sessions)
        w = config.world
        s, n, m = w.scale, w.noise_weight, w.mainstream_weight
        jitter = 0.01 * (config.seed - 2)
        value = {
            "random": 0.5 * s - 0.1 * n + 0.05 * m + jitter,
            "sticky_artist": 0.3 * s - 0.8 * n + 3.5,
            "top_pop": 0.2 * s + 0.3 * m + 1.0,
        }
        return {k: SimSummary(sessions, value[k], 0.0, 7.0) for k in names}

    monkeypatch.setattr(calibrate, "evaluate", evaluate)
    fitted = calibrate.fit(
        small_config(), 100, [1, 2, 3], say=lambda _: None, iterations=20, tol=1e-4, log_sessions=77
    )
    s, n, m = (fitted.world.scale, fitted.world.noise_weight, fitted.world.mainstream_weight)
    published = calibrate.COURSE_PUBLISHED
    assert 0.5 * s - 0.1 * n + 0.05 * m == pytest.approx(published["random"], abs=3e-3)
    assert 0.3 * s - 0.8 * n + 3.5 == pytest.approx(published["sticky_artist"], abs=3e-3)
    assert 0.2 * s + 0.3 * m + 1.0 == pytest.approx(published["top_pop"], abs=3e-3)
    assert set(logs) == {77}
    assert fitted.user == small_config().user and fitted.seed == small_config().seed


def test_world_overrides_are_validated() -> None:
    from botify_sim.calibrate import main

    with pytest.raises(SystemExit) as exit_:
        main(["--set", "no_such_parameter=1"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit):
        main(["--set", "genre_weight"])
