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


def test_fit_solves_for_scale_and_noise_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in world where both numbers are linear in both parameters and in the seed.
    def evaluate(config: SimConfig, sessions: int, names: tuple[str, ...]) -> dict[str, SimSummary]:
        s, n = config.world.scale, config.world.noise_weight
        jitter = 0.01 * (config.seed - 2)
        value = {"random": 0.5 * s - 0.1 * n + jitter, "sticky_artist": 0.3 * s - 0.8 * n + 3.5}
        return {k: SimSummary(sessions, value[k], 0.0, 7.0) for k in names}

    monkeypatch.setattr(calibrate, "evaluate", evaluate)
    fitted = calibrate.fit(small_config(), 100, [1, 2, 3], say=lambda _: None)
    s, n = fitted.world.scale, fitted.world.noise_weight
    assert 0.5 * s - 0.1 * n == pytest.approx(calibrate.PUBLISHED["random"], abs=2e-3)
    assert 0.3 * s - 0.8 * n + 3.5 == pytest.approx(calibrate.PUBLISHED["sticky_artist"], abs=2e-3)
    assert fitted.user == small_config().user and fitted.seed == small_config().seed


def test_world_overrides_are_validated() -> None:
    from botify_sim.calibrate import main

    with pytest.raises(SystemExit) as exit_:
        main(["--set", "no_such_parameter=1"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit):
        main(["--set", "genre_weight"])
