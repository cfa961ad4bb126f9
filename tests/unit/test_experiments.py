from __future__ import annotations

from collections import Counter
from pathlib import Path

import mmh3
import pytest

from botify.errors import ConfigError
from botify.experiments import ExperimentPlan, ExperimentSplit, load_experiments, parse_experiments


def original_botify_arm(user: int, name: str, groups: int) -> str:
    """reference.md §1, written out independently of the module under test."""
    seed = mmh3.hash(name) & 0xFFFFFFFF
    group = mmh3.hash(str(user), seed, signed=False) % groups
    return "C" if group == 0 else f"T{group}"


def test_reference_log_line_assignment_is_reproduced() -> None:
    # reference.md §1's sample log line: user 1984 is in T1 of the 2-way "AA" experiment.
    assert ExperimentSplit("AA", 2).arm(1984) == "T1"


@pytest.mark.parametrize("groups", [2, 3, 4, 5, 7, 9])
@pytest.mark.parametrize("name", ["AA", "RECOMMENDERS", "HW_2024", "ÜNICODE"])
def test_assignment_matches_botify_for_every_split(name: str, groups: int) -> None:
    split = ExperimentSplit(name, groups)
    for user in range(0, 20_000, 7):
        assert split.arm(user) == original_botify_arm(user, name, groups)


def test_groups_are_balanced_and_names_are_independent() -> None:
    a, b = ExperimentSplit("A", 2), ExperimentSplit("B", 2)
    counts = Counter(a.arm(u) for u in range(20_000))
    assert abs(counts["C"] - counts["T1"]) < 600
    same = sum(a.arm(u) == b.arm(u) for u in range(20_000))
    assert 9_000 < same < 11_000


@pytest.mark.parametrize("groups", [1, 6, 8, 10])
def test_unsupported_split_is_refused(groups: int) -> None:
    with pytest.raises(ConfigError, match="groups"):
        ExperimentSplit("X", groups)


def test_arms_must_cover_every_group() -> None:
    with pytest.raises(ConfigError, match="arms must be exactly"):
        ExperimentSplit("X", 3, {"C": "random", "T1": "top_pop"})


def test_only_one_experiment_may_route() -> None:
    arms = {"C": "random", "T1": "top_pop"}
    with pytest.raises(ConfigError, match="at most one"):
        ExperimentPlan((ExperimentSplit("X", 2, arms), ExperimentSplit("Y", 2, arms)))


def test_plan_routes_users_and_labels_every_experiment(tmp_path: Path) -> None:
    path = tmp_path / "e.toml"
    path.write_text(
        '[[experiment]]\nname = "AA"\ngroups = 2\n\n'
        '[[experiment]]\nname = "R"\ngroups = 2\narms = { C = "random", T1 = "top_pop" }\n'
    )
    plan = load_experiments(path)
    for user in range(100):
        arms = plan.arms(user)
        assert set(arms) == {"AA", "R"}
        assert plan.recommender_for(user) == {"C": "random", "T1": "top_pop"}[arms["R"]]


def test_no_routing_experiment_serves_the_default() -> None:
    plan = parse_experiments({"experiment": [{"name": "AA", "groups": 2}]}, "sticky_artist")
    assert plan.recommender_for(5) == "sticky_artist"


@pytest.mark.parametrize(
    "doc",
    [
        {"experiment": {"name": "x"}},
        {"experiment": [{"name": "x", "groups": "2"}]},
        {"experiment": [{"name": "x", "groups": 2, "colour": "red"}]},
        {"experiment": [{"name": "x", "groups": 2}, {"name": "x", "groups": 3}]},
    ],
)
def test_bad_config_is_a_config_error(doc: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError):
        parse_experiments(doc, "random")


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[[experiment]\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_experiments(path)


def test_assignment_agrees_with_arms_and_routing() -> None:
    routing = ExperimentSplit("R", 3, {"C": "random", "T1": "top_pop", "T2": "sticky_artist"})
    plan = ExperimentPlan((ExperimentSplit("AA", 2), routing))
    for user in range(300):
        a = plan.assign(user)
        assert a.arms == plan.arms(user) and a.arm == routing.arm(user)
        assert a.recommender == routing.recommender_for(user) == plan.recommender_for(user)
    unrouted = ExperimentPlan((ExperimentSplit("AA", 2),), "sticky_artist").assign(7)
    assert unrouted.arm is None and unrouted.recommender == "sticky_artist"


def test_arm_labels_give_each_routed_arm_its_recommender_and_label_arms_every_one() -> None:
    plan = ExperimentPlan(
        (
            ExperimentSplit("AA", 2),
            ExperimentSplit("REC", 3, {"C": "random", "T1": "top_pop", "T2": "random"}),
        )
    )
    labels = plan.arm_labels()
    assert ("REC", "T1", "top_pop") in labels and ("REC", "C", "random") in labels
    assert {(e, a, r) for e, a, r in labels if e == "AA"} == {
        ("AA", arm, rec) for arm in ("C", "T1") for rec in ("random", "top_pop")
    }
    # Every listen's labels are among them.
    for user in range(200):
        a = plan.assign(user)
        for name, arm in a.arms.items():
            assert (name, arm, a.recommender) in labels


def test_arm_labels_without_routing_use_the_default_recommender() -> None:
    plan = ExperimentPlan((ExperimentSplit("AA", 2),), default_recommender="top_pop")
    assert plan.arm_labels() == [("AA", "C", "top_pop"), ("AA", "T1", "top_pop")]


def test_serving_arms_are_the_routing_arms_or_the_default_recommender() -> None:
    routed = ExperimentPlan((ExperimentSplit("REC", 2, {"C": "random", "T1": "top_pop"}),))
    assert routed.serving_arms() == [("random", "C"), ("top_pop", "T1")]
    assert ExperimentPlan((ExperimentSplit("AA", 2),)).serving_arms() == [("random", None)]
