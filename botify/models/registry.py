"""The one registry of learned recommenders: each trained model (its torch half, its
hyper-parameters) and each serving recipe (an experiment arm over those models).

The trainer, the API, the demo, the docs table and the tests all read it. Built-in models
register themselves when ``botify.models`` is imported; more come from plugin modules named
in ``BOTIFY_MODELS__PLUGINS`` (``load_plugins``), which register the same way. This module
never imports torch: a model names its torch half as ``"module:Class"``, and only the
trainer imports it (``services.trainer.models``).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from botify.errors import ConfigError
from botify.recommenders import BASELINES
from botify.recommenders.base import Recommender, RecommenderContext
from botify.recommenders.model_recommender import ServingParams
from botify.recommenders.ranking import Ranking
from botify.settings import ModelHyperParams, RecommenderSettings, TrainerSettings

Entry = TypeVar("Entry", "LearnedModel", "Recipe")
RecipeBuilder = Callable[[RecommenderContext, ServingParams, Recommender], Recommender]


@dataclass(frozen=True)
class Recipe:
    """An experiment arm over trained models: which models' slots it reads, and how it is
    built (candidate sources, anchor, policy) around a model-free fallback."""

    name: str
    reads: tuple[str, ...]
    build: RecipeBuilder
    # Its own serving knobs (read by ``build`` through ``ServingParams.section``):
    # BOTIFY_RECOMMENDER__<NAME>__<FIELD>, or before they moved here <legacy_prefix><FIELD>
    # (None: <name>_).
    params: type[BaseModel] | None = None
    legacy_prefix: str | None = None


@dataclass(frozen=True)
class LearnedModel:
    """A model the trainer trains and publishes as versioned artifacts."""

    name: str
    # "module:Class" of the torch half: a class with ``build(data, hyper)`` and
    # ``examples(data)`` (services.trainer.models.TrainableModel). Only the trainer imports it.
    trainer: str
    # Its hyper-parameters' section, with this model's defaults: BOTIFY_TRAINER__<NAME>__*.
    params: type[ModelHyperParams] = ModelHyperParams
    recipes: tuple[Recipe, ...] = field(default=())
    # The trainer's default order (``default_models``): lower first, then in the order they
    # registered. The best-serving model comes first: it is the freshest after each round.
    rank: int = 100
    # How the offline evaluation ranks a held-out query (``botify.evaluation``): the
    # candidate source of the recipe it serves best through, anchored on the previous track.
    # None: from its arrays (neighbours when it has them and context vectors or no user
    # lists, else the user's top tracks), in the model's order.
    evaluated_by: Ranking | None = None

    def __post_init__(self) -> None:
        # A plain string ("user_top") is accepted and checked here, at registration: an
        # unknown name would otherwise rank every held-out query by some other source.
        if self.evaluated_by is not None:
            object.__setattr__(self, "evaluated_by", Ranking(self.evaluated_by))


MODELS: dict[str, LearnedModel] = {}
RECIPES: dict[str, Recipe] = {}


def register(model: LearnedModel, *recipes: Recipe) -> None:
    """Add ``model`` and its recipes (plus any ``recipes`` serving several models). A name
    registered twice is an error, unless it is the very same entry (a module imported again),
    and so is a name a baseline or a settings field already takes."""
    _check_model_name(model.name)
    for recipe in (*model.recipes, *recipes):
        _check_recipe_name(recipe.name)
    for recipe in (*model.recipes, *recipes):
        _add(RECIPES, recipe.name, recipe)
    _add(MODELS, model.name, model)


def register_recipe(recipe: Recipe) -> None:
    """Add a recipe over models registered elsewhere (e.g. a cascade of several)."""
    _check_recipe_name(recipe.name)
    _add(RECIPES, recipe.name, recipe)


def _check_model_name(name: str) -> None:
    # A trainer setting's name would make the model's section impossible to set.
    if name in TrainerSettings.model_fields:
        raise ConfigError(
            f"model {name!r}: BOTIFY_TRAINER__{name.upper()} is already a trainer setting, "
            "so its section could never be set; choose another name"
        )


def _check_recipe_name(name: str) -> None:
    # A baseline's name would hide the recipe behind it (and list it twice among the arms);
    # a serving setting's would make its section impossible to set.
    if name in BASELINES:
        raise ConfigError(
            f"recipe {name!r}: a model-free recommender has that name; choose another name"
        )
    if name in RecommenderSettings.model_fields:
        raise ConfigError(
            f"recipe {name!r}: BOTIFY_RECOMMENDER__{name.upper()} is already a serving "
            "setting, so its section could never be set; choose another name"
        )


def _add(table: dict[str, Entry], name: str, entry: Entry) -> None:
    known = table.get(name)
    if known is not None and known != entry:
        raise ConfigError(f"{name!r} is registered twice")
    table[name] = entry


def hyper_params(name: str, settings: TrainerSettings) -> ModelHyperParams:
    """Model ``name``'s section of ``settings`` (``BOTIFY_TRAINER__<NAME>__*``, or the whole
    section as JSON), validated by its own ``params`` class: what is not set keeps that
    class's defaults. ``ConfigError`` for an unknown model or an invalid value."""
    model = learned_model(name)
    raw = (settings.model_extra or {}).get(name, {})
    try:
        if isinstance(raw, str):
            raw = json.loads(raw)
        if isinstance(raw, BaseModel):
            raw = raw.model_dump(exclude_unset=True)
        return model.params.model_validate(raw)
    except (ValueError, ValidationError) as exc:
        raise ConfigError(f"invalid hyper-parameters for model {name!r}: {exc}") from None


def check_sections(settings: TrainerSettings) -> None:
    """``ConfigError`` for a hyper-parameter section that names no registered model (a
    typo would otherwise be ignored), or one that does not validate."""
    for name in settings.model_extra or {}:
        if name not in MODELS:
            raise ConfigError(
                f"BOTIFY_TRAINER__{name.upper()}: no such setting or registered model; "
                f"models: {', '.join(sorted(MODELS))}"
            )
        hyper_params(name, settings)


def check_serving(settings: RecommenderSettings) -> None:
    """``ConfigError`` for a serving key that is neither a shared setting nor a registered
    recipe's (its section, or one of its fields under the old flat name), or for a recipe's
    section that does not validate."""
    extras = settings.model_extra or {}
    params = ServingParams(settings, 0.0, extras)
    claimed: set[str] = set()
    for recipe in RECIPES.values():
        if recipe.params is None:
            continue
        prefix = f"{recipe.name}_" if recipe.legacy_prefix is None else recipe.legacy_prefix
        claimed.add(recipe.name)
        claimed.update(f"{prefix}{field}" for field in recipe.params.model_fields)
        params.section(recipe.params, recipe.name, recipe.legacy_prefix)
    unknown = sorted(set(extras) - claimed)
    if unknown:
        raise ConfigError(
            f"BOTIFY_RECOMMENDER__{unknown[0].upper()}: no such setting or registered recipe; "
            f"recipes: {', '.join(sorted(RECIPES))}"
        )


def load_plugins(modules: Iterable[str]) -> None:
    """Import each plugin module, which registers its models when imported. Whatever fails
    in it (a missing module, a syntax error, a refused name) is a ``ConfigError``."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # a plugin is anyone's code: any failure stops the start
            raise ConfigError(f"cannot load model plugin {module!r}: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    """``exc``'s message on one line (its type when it has none)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def default_models() -> tuple[str, ...]:
    """Every registered model, in the trainer's default order (``LearnedModel.rank``, then
    the order they registered: built-ins, then plugins as listed)."""
    ranked = sorted(enumerate(MODELS.values()), key=lambda item: (item[1].rank, item[0]))
    return tuple(model.name for _, model in ranked)


def trained_models(settings: TrainerSettings) -> tuple[str, ...]:
    """The models the trainer trains, in order: ``BOTIFY_TRAINER__MODELS`` when set, else
    every registered model (``default_models``)."""
    return default_models() if settings.models is None else settings.models


def learned_model(name: str) -> LearnedModel:
    """The registered model ``name``; ``ConfigError`` lists the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None


def model_readers(recipes: Iterable[str] | None = None) -> dict[str, tuple[str, ...]]:
    """Model -> which of ``recipes`` (default: all; names that are no recipe are skipped)
    read it, both sorted by name."""
    out: dict[str, list[str]] = {}
    for name in sorted(set(RECIPES if recipes is None else recipes)):
        recipe = RECIPES.get(name)
        for model in () if recipe is None else recipe.reads:
            out.setdefault(model, []).append(name)
    return {model: tuple(readers) for model, readers in sorted(out.items())}
