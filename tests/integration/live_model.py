"""A stack whose trainer learns one model fast and whose every arm serves it."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from botify.catalog import Catalog, write_catalog
from botify.settings import ModelHyperParams


def one_model_env(
    directory: Path, catalog: Catalog, model: str, **overrides: str
) -> dict[str, str]:
    """Write ``catalog`` and an experiment whose two arms both serve ``model`` into
    ``directory``; return the BOTIFY_* variables of a stack whose trainer trains only
    ``model``, in short rounds (``overrides`` win)."""
    write_catalog(catalog.tracks, directory / "catalog.jsonl")
    (directory / "experiments.toml").write_text(
        f'[[experiment]]\nname = "ALL"\ngroups = 2\narms = {{ C = "{model}", T1 = "{model}" }}\n'
    )
    return {
        "BOTIFY_RUN_DIR": str(directory),
        "BOTIFY_CATALOG__PATH": str(directory / "catalog.jsonl"),
        "BOTIFY_EXPERIMENTS__PATH": str(directory / "experiments.toml"),
        "BOTIFY_TRAINER__MODELS": json.dumps([model]),
        "BOTIFY_TRAINER__EVERY_S": "2",
        "BOTIFY_TRAINER__MIN_EXAMPLES": "50",
        "BOTIFY_TRAINER__DEVICE": "cpu",
        "BOTIFY_TRAINER__TRAIN_BUDGET_S": "1",
        "BOTIFY_TRAINER__EXPORT_BUDGET_S": "1",
        # The shared defaults with a 1 s budget, not the model's tuned section: a short
        # run of any model, promoted on the trainer's primary metric.
        f"BOTIFY_TRAINER__{model.upper()}": ModelHyperParams(budget_s=1).model_dump_json(),
        "BOTIFY_TRAINER__TOP_K": "20",
        **overrides,
    }


def served_version(metrics_text: str, model: str) -> int:
    """An API's ``botify_api_model_version`` gauge for ``model`` (0: none yet)."""
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "botify_api_model_version" and sample.labels["model"] == model:
                return int(sample.value)
    return 0
