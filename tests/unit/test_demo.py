"""The demo's experiment: one arm per recommender, and which arms serve each trained model
(whose freshness the demo measures)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from botify.errors import ConfigError
from botify.experiments import load_experiments
from botify.models import MODELS, RECIPES, default_models, hyper_params, load_plugins
from botify.recommenders import BASELINES, model_readers, recommender_names
from botify.settings import DemoSettings, Settings, TrainerSettings
from botify_cli.demo import CONTROL, EXPERIMENT, demo_arms, trainer_env, write_experiments

PLUGIN = "tests.integration.models.tiny_pairs"


def default_arms() -> dict[str, str]:
    return demo_arms(DemoSettings().arms)


def test_demo_arms_give_every_recommender_one_arm_with_random_as_control() -> None:
    arms = default_arms()
    assert len(arms) == 9 == len(recommender_names())
    assert list(arms) == ["C"] + [f"T{g}" for g in range(1, 9)]
    assert arms["C"] == CONTROL == "random"
    assert sorted(arms.values()) == sorted(recommender_names())


def test_given_arms_come_in_order_and_spare_groups_are_random() -> None:
    arms = demo_arms(["sticky_artist", " affinity", "top_pop", "", "dae", "contextual"])
    assert arms == {
        "C": "random",
        "T1": "sticky_artist",
        "T2": "affinity",
        "T3": "top_pop",
        "T4": "dae",
        "T5": "contextual",
        "T6": "random",  # six arms: the next split has seven groups
    }
    assert demo_arms(["random", "affinity"]) == {"C": "random", "T1": "affinity"}


def test_a_tenth_recommender_does_not_change_the_default_arms(monkeypatch) -> None:
    monkeypatch.setitem(BASELINES, "zz_tenth", BASELINES["random"])
    assert default_arms() == demo_arms(DemoSettings().arms)
    assert len(default_arms()) == 9


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["affinity", "nope"], "unknown recommender 'nope'"),
        (["affinity", "affinity"], "given twice: affinity"),
        ([f"r{i}" for i in range(9)], "unknown recommender"),
    ],
)
def test_bad_arms_are_config_errors(names: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        demo_arms(names)


def test_more_arms_than_the_largest_split_is_a_config_error(monkeypatch) -> None:
    for i in range(9):
        monkeypatch.setitem(BASELINES, f"extra{i}", BASELINES["random"])
    with pytest.raises(ConfigError, match="at most 8"):
        demo_arms([f"extra{i}" for i in range(9)])


def test_the_demo_trainer_rounds_by_data_only_and_trains_what_the_arms_serve(
    monkeypatch,
) -> None:
    settings = Settings()
    env = trainer_env(settings, ["random", "affinity", "sticky_artist"])
    assert json.loads(env["BOTIFY_TRAINER__MODELS"]) == ["affinity"]
    assert env["BOTIFY_TRAINER__EVERY_EXAMPLES"] == str(settings.demo.train_every_examples)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    trainer = Settings().trainer
    assert trainer.every_s == float("inf")  # no timed rounds
    assert trainer.train_budget_s == trainer.export_budget_s == settings.demo.train_budget_s
    # The affinity override keeps every other hyper-parameter of the settings.
    expected = hyper_params("affinity", settings.trainer)
    expected = expected.model_copy(update={"budget_s": trainer.train_budget_s})
    assert hyper_params("affinity", trainer) == expected


def test_the_demo_experiments_file_loads_and_routes_every_arm(tmp_path: Path) -> None:
    arms = default_arms()
    plan = load_experiments(write_experiments(tmp_path / "experiments.toml", arms))
    assert plan.routing is not None and plan.routing.name == EXPERIMENT
    assert plan.routing.arms == arms
    assert plan.recommender_names() == set(recommender_names())


def test_model_readers_maps_each_model_to_the_recipes_that_declare_they_read_it() -> None:
    expected: dict[str, list[str]] = {}
    for name in sorted(RECIPES):
        for model in RECIPES[name].reads:
            expected.setdefault(model, []).append(name)
    assert model_readers() == {m: tuple(r) for m, r in sorted(expected.items())}
    assert model_readers()["lightgcn"] == ("cascade",)
    # Every recommender has an arm, so the registry's readers are the demo's.
    assert model_readers(default_arms().values()) == model_readers()
    # Every model some recipe reads is registered: the trainer can train it.
    assert set(model_readers()) <= set(MODELS)


def test_model_free_recommenders_read_no_model() -> None:
    assert model_readers(["random", "top_pop", "sticky_artist", "random"]) == {}
    assert model_readers(["dae", "dae"]) == {"dae": ("dae",)}


def test_every_model_the_trainer_trains_is_served_by_some_demo_arm() -> None:
    # A model no arm serves would cost the trainer a share of every round for nothing.
    assert set(model_readers(default_arms().values())) == set(default_models())
    # And the trainer trains every registered model by default.
    assert TrainerSettings().models is None
    assert set(default_models()) == set(MODELS)


@pytest.fixture
def plugin_registry() -> Iterator[None]:
    """The registry as it was, after a test that loads the tiny_pairs plugin."""
    models, recipes = dict(MODELS), dict(RECIPES)
    yield
    MODELS.clear()
    MODELS.update(models)
    RECIPES.clear()
    RECIPES.update(recipes)
    sys.modules.pop(PLUGIN, None)


def test_the_demo_trainer_trains_a_plugin_model_its_arms_read(
    plugin_registry: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_plugins([PLUGIN])
    env = trainer_env(Settings(), ["affinity", "tiny_pairs"])
    assert json.loads(env["BOTIFY_TRAINER__MODELS"]) == ["affinity", "tiny_pairs"]
    # Even when BOTIFY_TRAINER__MODELS leaves it out: its arm would serve the fallback only.
    monkeypatch.setenv("BOTIFY_TRAINER__MODELS", '["next_track", "affinity"]')
    env = trainer_env(Settings(), ["affinity", "tiny_pairs", "next_track"])
    assert json.loads(env["BOTIFY_TRAINER__MODELS"]) == ["next_track", "affinity", "tiny_pairs"]


def test_freshness_leaves_out_models_only_a_multi_model_arm_serves() -> None:
    from botify_cli.demo import single_model_readers

    readers = single_model_readers(["cascade", "next_track", "affinity"])
    # cascade serves lightgcn, lightfm and next_track: its events cannot say which.
    assert readers == {"affinity": ("affinity",), "next_track": ("next_track",)}


def test_round_sizes_and_whether_the_trainer_kept_up() -> None:
    from botify_cli.demo import round_sizes, trainer_kept_up

    runs = [
        {"model": "a", "round": 0, "new_examples": 900},
        {"model": "b", "round": 0, "new_examples": 900},
        {"model": "a", "round": 1, "new_examples": 1100},
        {"model": "a", "round": 2, "new_examples": None},  # before the count was recorded
        {"model": "a"},
    ]
    assert round_sizes(runs) == [900, 1100]
    assert trainer_kept_up([5000, 1000, 1400], 1000)  # the first round may wait for more
    assert not trainer_kept_up([1000, 1000, 1600], 1000)
