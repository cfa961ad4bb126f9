"""The demo's experiment: one arm per recommender, and which arms serve each trained model
(whose freshness the demo measures)."""

from __future__ import annotations

from pathlib import Path

from botify.experiments import load_experiments
from botify.recommenders import REGISTRY, model_readers
from botify.settings import TrainerSettings
from botify_cli.demo import CONTROL, EXPERIMENT, demo_arms, write_experiments


def test_demo_arms_give_every_recommender_one_arm_with_random_as_control() -> None:
    arms = demo_arms()
    assert len(arms) == 9 == len(REGISTRY)
    assert list(arms) == ["C"] + [f"T{g}" for g in range(1, 9)]
    assert arms["C"] == CONTROL == "random"
    assert sorted(arms.values()) == sorted(REGISTRY)


def test_the_demo_experiments_file_loads_and_routes_every_arm(tmp_path: Path) -> None:
    arms = demo_arms()
    plan = load_experiments(write_experiments(tmp_path / "experiments.toml", arms))
    assert plan.routing is not None and plan.routing.name == EXPERIMENT
    assert plan.routing.arms == arms
    assert plan.recommender_names() == set(REGISTRY)


def test_model_readers_maps_each_model_to_the_demo_arms_that_read_it() -> None:
    expected = {
        "affinity": ("affinity",),
        "contextual": ("contextual",),
        "dae": ("dae",),
        "lightfm": ("cascade",),
        "lightgcn": ("cascade",),
        "next_track": ("cascade", "next_track", "next_track_diverse"),
    }
    assert model_readers(demo_arms().values()) == expected
    # Every recommender has an arm, so the registry's readers are the demo's.
    assert model_readers() == expected


def test_model_free_recommenders_read_no_model() -> None:
    assert model_readers(["random", "top_pop", "sticky_artist", "random"]) == {}
    assert model_readers(["dae", "dae"]) == {"dae": ("dae",)}


def test_every_model_the_trainer_trains_is_served_by_some_demo_arm() -> None:
    # A model no arm serves would cost the trainer a share of every round for nothing.
    assert set(model_readers(demo_arms().values())) == set(TrainerSettings().models)


def test_freshness_leaves_out_models_only_a_multi_model_arm_serves() -> None:
    from botify_cli.demo import single_model_readers

    readers = single_model_readers(["cascade", "next_track", "affinity"])
    # cascade serves lightgcn, lightfm and next_track: its events cannot say which.
    assert readers == {"affinity": ("affinity",), "next_track": ("next_track",)}
