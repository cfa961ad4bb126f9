"""The one registry of learned recommenders: what it holds, how plugins join it, and the docs
table that must describe every entry."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from botify.errors import ConfigError
from botify.models import (
    MODELS,
    RECIPES,
    check_sections,
    check_serving,
    default_models,
    hyper_params,
    load_plugins,
    model_readers,
    trained_models,
)
from botify.models.registry import LearnedModel, Recipe, learned_model, register, register_recipe
from botify.recommenders import RecommenderContext, build_recommender, recommender_names
from botify.recommenders.model_recommender import ServingParams
from botify.settings import REPO_DIR, ModelHyperParams, Settings, TrainerSettings
from tests.factories import registry_restored, small_catalog

PLUGIN = "tests.integration.models.tiny_pairs"


@pytest.fixture
def registry() -> Iterator[None]:
    """The registry as it was, after the test."""
    with registry_restored(PLUGIN):
        yield


def docs_table() -> dict[str, set[str]]:
    """docs/models.md's table: model -> the arms its "served by" column names."""
    rows: dict[str, set[str]] = {}
    for line in (REPO_DIR / "docs" / "models.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"`\w+`", cells[0]):
            rows[cells[0].strip("`")] = set(re.findall(r"`(\w+)`", cells[2]))
    return rows


def test_the_docs_table_has_one_row_per_registered_model_naming_the_arms_that_serve_it() -> None:
    assert docs_table() == {model: set(readers) for model, readers in model_readers().items()}
    assert set(docs_table()) == set(MODELS)


def test_every_recipe_reads_registered_models_and_every_model_is_trained_by_default() -> None:
    for recipe in RECIPES.values():
        assert set(recipe.reads) <= set(MODELS), recipe.name
    assert TrainerSettings().models is None
    assert set(trained_models(TrainerSettings())) == set(MODELS)
    assert not set(RECIPES) & {"random", "top_pop", "sticky_artist"}


def test_the_trainer_trains_every_registered_model_by_default_plugins_last(
    registry: None,
) -> None:
    builtin = ("affinity", "contextual", "next_track", "dae", "lightgcn", "lightfm")
    assert default_models() == builtin  # the best-serving first: freshest after each round
    load_plugins([PLUGIN])
    assert trained_models(TrainerSettings()) == (*builtin, "tiny_pairs")
    assert trained_models(TrainerSettings(models=("dae",))) == ("dae",)


def test_the_core_registry_names_the_torch_half_without_importing_it() -> None:
    for model in MODELS.values():
        module, _, attr = model.trainer.partition(":")
        assert module.startswith("services.trainer.models.") and attr, model


def test_a_plugin_module_registers_its_model_and_recipe(registry: None) -> None:
    assert "tiny_pairs" not in recommender_names()
    load_plugins([PLUGIN])
    assert learned_model("tiny_pairs").trainer.endswith("tiny_pairs_net:TinyPairs")
    assert model_readers(["tiny_pairs"]) == {"tiny_pairs": ("tiny_pairs",)}
    context = RecommenderContext(small_catalog())
    build_recommender("tiny_pairs", context)
    assert set(context.models) == {"tiny_pairs"}


def test_a_missing_plugin_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot load model plugin 'no_such_plugin'"):
        load_plugins(["no_such_plugin"])


def test_a_plugin_that_fails_on_import_is_one_config_error_line(
    registry: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_plugin.py").write_text('raise RuntimeError("no GPU here\\nat all")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "broken_plugin", raising=False)
    with pytest.raises(ConfigError) as info:
        load_plugins(["broken_plugin"])
    assert str(info.value) == "cannot load model plugin 'broken_plugin': RuntimeError: no GPU here"


def test_a_name_registered_twice_is_a_config_error(registry: None) -> None:
    clash = LearnedModel("affinity", "somewhere:Else")
    with pytest.raises(ConfigError, match="'affinity' is registered twice"):
        register(clash)
    other = Recipe("dae", ("dae",), RECIPES["contextual"].build)
    with pytest.raises(ConfigError, match="'dae' is registered twice"):
        register(MODELS["dae"], other)
    # Registering the very same entry again (a module imported twice) is harmless.
    register(MODELS["dae"])


@pytest.mark.parametrize(
    ("model", "recipe", "message"),
    [
        ("mine", "random", "recipe 'random': a model-free recommender has that name"),
        ("mine", "sticky_artist", "recipe 'sticky_artist': a model-free recommender"),
        ("mine", "seed", "recipe 'seed': BOTIFY_RECOMMENDER__SEED is already a serving"),
        ("mine", "top_pop_k", "BOTIFY_RECOMMENDER__TOP_POP_K is already a serving setting"),
        ("models", "mine", "model 'models': BOTIFY_TRAINER__MODELS is already a trainer"),
        ("seed", "mine", "model 'seed': BOTIFY_TRAINER__SEED is already a trainer setting"),
    ],
)
def test_a_name_a_baseline_or_a_setting_takes_is_refused(
    registry: None, model: str, recipe: str, message: str
) -> None:
    build = RECIPES["contextual"].build
    with pytest.raises(ConfigError, match=message):
        register(LearnedModel(model, "somewhere:Else", recipes=(Recipe(recipe, (model,), build),)))
    assert model not in MODELS and recipe not in RECIPES
    assert len(recommender_names()) == len(set(recommender_names()))
    if model == "mine":
        with pytest.raises(ConfigError, match=message):
            register_recipe(Recipe(recipe, ("dae",), build))


def test_an_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="known: affinity, contextual"):
        learned_model("nope")


def test_the_trainer_resolves_each_models_torch_half() -> None:
    pytest.importorskip("torch")
    from services.trainer.models import model_spec

    for name in MODELS:
        spec = model_spec(name)
        assert callable(spec.build) and callable(spec.examples)
        assert spec.hyper_params(TrainerSettings()) is not None
    with pytest.raises(ConfigError, match="unknown model"):
        model_spec("nope")


def test_each_models_hyper_parameters_default_to_what_the_trainer_always_used() -> None:
    trainer = TrainerSettings()
    got = {name: hyper_params(name, trainer).model_dump() for name in MODELS}
    shared = ModelHyperParams().model_dump()
    assert got["contextual"] == got["next_track"] == got["lightfm"] == shared | {"every_rounds": 2}
    assert got["affinity"] == shared | {
        "epochs": 10,
        "lr": 0.02,
        "l2": 1e-4,
        "budget_s": 8.0,
        "window_rows": 80_000,
        "promote_on": "mse",
    }
    assert got["dae"] == shared | {
        "dim": 64,
        "every_rounds": 2,
        "epochs": 10,
        "batch_size": 256,
        "lr": 3e-3,
        "l2": 1e-5,
        "dropout": 0.5,
    }
    assert got["lightgcn"] == shared | {
        "every_rounds": 2,
        "epochs": 10,
        "lr": 0.01,
        "l2": 1e-4,
        "layers": 2,
    }


def test_a_models_section_comes_from_its_env_vars_over_its_own_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOTIFY_TRAINER__AFFINITY__EPOCHS", "3")
    monkeypatch.setenv("BOTIFY_TRAINER__DAE", '{"dropout": 0.25}')
    trainer = Settings().trainer
    check_sections(trainer)
    affinity = hyper_params("affinity", trainer)
    assert (affinity.epochs, affinity.lr, affinity.budget_s) == (3, 0.02, 8.0)
    assert hyper_params("dae", trainer).model_dump()["dropout"] == 0.25


def test_a_json_section_and_a_single_field_of_it_merge_the_field_winning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOTIFY_TRAINER__AFFINITY", '{"epochs": 3, "lr": 0.1}')
    monkeypatch.setenv("BOTIFY_TRAINER__AFFINITY__LR", "0.5")
    monkeypatch.setenv("BOTIFY_TRAINER__DAE__DROPOUT", "0.25")  # a field alone still works
    monkeypatch.setenv("BOTIFY_RECOMMENDER__CASCADE", '{"sample_first": 2, "fail_run": 7}')
    monkeypatch.setenv("BOTIFY_RECOMMENDER__CASCADE__SAMPLE_FIRST", "5")
    settings = Settings()
    check_sections(settings.trainer)
    check_serving(settings.recommender)
    affinity = hyper_params("affinity", settings.trainer)
    assert (affinity.epochs, affinity.lr, affinity.budget_s) == (3, 0.5, 8.0)
    assert hyper_params("dae", settings.trainer).model_dump()["dropout"] == 0.25
    serving = ServingParams(settings.recommender, 0.0, settings.recommender.model_extra or {})
    cascade = RECIPES["cascade"]
    assert cascade.params is not None
    section = serving.section(cascade.params, "cascade").model_dump()
    assert (section["sample_first"], section["fail_run"]) == (5, 7)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BOTIFY_TRAINER__AFINITY__EPOCHS", "3", "AFINITY: no such setting or registered model"),
        ("BOTIFY_TRAINER__AFFINITY__EPOCHS", "0", "invalid hyper-parameters for model 'affinity'"),
        ("BOTIFY_TRAINER__DAE", "{not json", "invalid hyper-parameters for model 'dae'"),
    ],
)
def test_a_bad_models_section_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        check_sections(Settings().trainer)


def test_a_recipes_serving_section_comes_from_its_env_vars_new_or_old_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOTIFY_RECOMMENDER__AFFINITY__SESSION_POWER", "4")
    monkeypatch.setenv("BOTIFY_RECOMMENDER__DIVERSE_MAX_PER_ARTIST", "3")  # the old name
    monkeypatch.setenv("BOTIFY_RECOMMENDER__CASCADE", '{"fail_run": 5}')
    recommender = Settings().recommender
    check_serving(recommender)
    params = ServingParams.parse(recommender.model_dump())
    for name, field, value in [
        ("affinity", "session_power", 4.0),
        ("affinity", "session_sources", 20),
        ("next_track_diverse", "max_per_artist", 3),
        ("cascade", "fail_run", 5),
        ("cascade", "sample_first", 15),
    ]:
        recipe = RECIPES[name]
        assert recipe.params is not None
        section = params.section(recipe.params, name, recipe.legacy_prefix)
        assert getattr(section, field) == value, (name, field)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BOTIFY_RECOMMENDER__AFINITY__SESSION_POWER", "3", "AFINITY: no such setting"),
        ("BOTIFY_RECOMMENDER__CONTEXTUAL_KAY", "3", "CONTEXTUAL_KAY: no such setting"),
        ("BOTIFY_RECOMMENDER__DAE__K", "0", "invalid parameters of recommender 'dae'"),
        ("BOTIFY_RECOMMENDER__DAE__KAY", "3", "invalid parameters of recommender 'dae'"),
    ],
)
def test_a_bad_serving_key_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        check_serving(Settings().recommender)
