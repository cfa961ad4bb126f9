"""Experiments: users split into arms, reproducing botify's assignment exactly.

A user's group in experiment ``NAME`` with ``g`` groups is
``mmh3.hash(str(user), seed, signed=False) % g`` where ``seed = mmh3.hash(NAME) & 0xffffffff``.
Group 0 is arm ``C``; group k is ``Tk``. At most one experiment routes users to
recommenders (its ``arms`` table); the others only label traffic (A/A checks and the like).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import mmh3

from botify.errors import ConfigError

ALLOWED_GROUPS = (2, 3, 4, 5, 7, 9)


def arm_name(group: int) -> str:
    return "C" if group == 0 else f"T{group}"


@dataclass(frozen=True)
class ExperimentSplit:
    """One experiment: a name, a number of equal groups and, optionally, a recommender per arm."""

    name: str
    groups: int
    arms: Mapping[str, str] = field(default_factory=dict)
    seed: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 64:
            raise ConfigError("an experiment needs a name of 1 to 64 characters")
        if self.groups not in ALLOWED_GROUPS:
            raise ConfigError(
                f"experiment {self.name!r}: groups must be one of {ALLOWED_GROUPS}, "
                f"got {self.groups}"
            )
        if self.arms:
            expected = {arm_name(g) for g in range(self.groups)}
            if set(self.arms) != expected:
                raise ConfigError(
                    f"experiment {self.name!r}: arms must be exactly {sorted(expected)}, "
                    f"got {sorted(self.arms)}"
                )
        object.__setattr__(self, "seed", mmh3.hash(self.name) & 0xFFFFFFFF)

    def group(self, user: int) -> int:
        return mmh3.hash(str(user), self.seed, signed=False) % self.groups

    def arm(self, user: int) -> str:
        return arm_name(self.group(user))

    def recommender_for(self, user: int) -> str:
        return self.arms[self.arm(user)]


@dataclass(frozen=True, slots=True)
class Assignment:
    """A user's arm in every experiment, and who serves them."""

    arms: dict[str, str]
    # The arm in the routing experiment, None when no experiment routes.
    arm: str | None
    recommender: str


@dataclass(frozen=True)
class ExperimentPlan:
    """All active experiments; answers a user's arms and which recommender serves them."""

    experiments: tuple[ExperimentSplit, ...]
    default_recommender: str = "random"
    routing: ExperimentSplit | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        names = [e.name for e in self.experiments]
        if len(set(names)) != len(names):
            raise ConfigError("experiment names must be unique")
        routing = [e for e in self.experiments if e.arms]
        if len(routing) > 1:
            raise ConfigError("at most one experiment may route users to recommenders")
        # Found once: assign() runs on every request.
        object.__setattr__(self, "routing", routing[0] if routing else None)

    def arms(self, user: int) -> dict[str, str]:
        return {e.name: e.arm(user) for e in self.experiments}

    def assign(self, user: int) -> Assignment:
        """Every arm of the user, hashing each experiment once."""
        arms = self.arms(user)
        if self.routing is None:
            return Assignment(arms, None, self.default_recommender)
        arm = arms[self.routing.name]
        return Assignment(arms, arm, self.routing.arms[arm])

    def recommender_for(self, user: int) -> str:
        return self.assign(user).recommender

    def recommender_names(self) -> set[str]:
        names = {self.default_recommender}
        for e in self.experiments:
            names.update(e.arms.values())
        return names

    def serving_arms(self) -> list[tuple[str, str | None]]:
        """(recommender, arm of the routing experiment) of every arm that serves; the arm is
        None when no experiment routes (the default recommender serves everyone)."""
        if self.routing is None:
            return [(self.default_recommender, None)]
        return [(rec, arm) for arm, rec in self.routing.arms.items()]

    def arm_labels(self) -> list[tuple[str, str, str]]:
        """Every (experiment, arm, recommender) a listen can carry: a routing experiment's
        arm has its one recommender; a labelling experiment's arm sees every recommender
        that serves (its users are routed by the other experiment)."""
        serving = sorted({rec for rec, _ in self.serving_arms()})
        out: list[tuple[str, str, str]] = []
        for e in self.experiments:
            for group in range(e.groups):
                arm = arm_name(group)
                for rec in [e.arms[arm]] if e.arms else serving:
                    out.append((e.name, arm, rec))
        return out


def parse_experiments(doc: Mapping[str, object], default_recommender: str) -> ExperimentPlan:
    raw = doc.get("experiment", [])
    if not isinstance(raw, list):
        raise ConfigError("'experiment' must be an array of tables ([[experiment]])")
    splits = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ConfigError(f"experiment #{i + 1} must be a table")
        unknown = set(item) - {"name", "groups", "arms"}
        if unknown:
            raise ConfigError(f"experiment #{i + 1}: unknown keys {sorted(unknown)}")
        name, groups, arms = item.get("name"), item.get("groups"), item.get("arms", {})
        if not isinstance(name, str):
            raise ConfigError(f"experiment #{i + 1}: 'name' must be a string")
        if not isinstance(groups, int):
            raise ConfigError(f"experiment {name!r}: 'groups' must be an integer")
        if not isinstance(arms, dict) or not all(isinstance(v, str) for v in arms.values()):
            raise ConfigError(f"experiment {name!r}: 'arms' must map arm names to recommenders")
        splits.append(ExperimentSplit(name, groups, dict(arms)))
    return ExperimentPlan(tuple(splits), default_recommender)


def load_experiments(path: Path | str, default_recommender: str = "random") -> ExperimentPlan:
    """Read an experiments TOML file; ``ConfigError`` says what is wrong with it."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read experiments file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    return parse_experiments(doc, default_recommender)
