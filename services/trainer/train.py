"""One training run, top to bottom: index the window, build (and warm-start) the model, fit
it under the time budget, export its arrays.

Runs are deterministic for a seed as long as the budget does not cut them short (a cut is
reported in the metrics): the seed drives initialisation, shuffling and negative sampling,
and torch's deterministic algorithms are on during the run. Threads come from the settings,
since the trainer shares the machine with the API.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import mmh3
import numpy as np
import polars as pl
import torch
from torch import nn

from botify.catalog import Catalog
from botify.settings import ModelHyperParams, TrainerSettings
from services.trainer.models import TrainableModel, model_spec
from services.trainer.models.dataset import Dataset, TrainingDataError
from services.trainer.ranking import Ranker

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """A trained version: artifact arrays, run metrics and the parameters that made it."""

    arrays: dict[str, np.ndarray]
    metrics: dict[str, float]
    params: dict[str, object]


@dataclass
class FitStats:
    steps: int = 0
    epochs: int = 0
    budget_exhausted: bool = False
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def configure_torch(settings: TrainerSettings) -> torch.device:
    """Apply the process-wide torch settings (threads) and return the device to train on."""
    torch.set_num_threads(settings.threads)
    return resolve_device(settings.device)


def train_model(
    name: str,
    frame: pl.DataFrame,
    catalog: Catalog,
    parent: Mapping[str, np.ndarray] | None,
    settings: TrainerSettings,
) -> TrainResult:
    """Train the registered model ``name`` on ``frame`` (the trainer's examples), warm-started
    from ``parent`` (a served version's arrays) when given. ``TrainingDataError`` if the window
    has nothing this model can learn from; ``ConfigError`` for an unknown name."""
    spec = model_spec(name)
    hyper = spec.hyper_params(settings)
    device = configure_torch(settings)
    data = Dataset.build(frame, catalog, settings.positive_threshold)
    examples = spec.examples(data)
    size = len(next(iter(examples.values())))
    if size == 0:
        raise TrainingDataError(
            f"{name}: nothing to learn from {frame.height} examples "
            f"({data.dropped} dropped, {int(data.positive.sum())} positive)"
        )
    seed = run_seed(settings.seed, frame)
    with _deterministic():
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = spec.build(data, hyper)
        warm = 0
        if parent is not None:
            try:
                warm = model.warm_start(parent, data)
            except (IndexError, ValueError, RuntimeError) as exc:
                # A malformed parent (rows that do not match its ids) cannot seed this run:
                # train from scratch rather than not at all.
                logger.warning("%s: ignoring the parent's arrays: %r", name, exc)
                torch.manual_seed(seed)
                model = spec.build(data, hyper)
        model.to(device)
        budget = settings.train_budget_s if hyper.budget_s is None else hyper.budget_s
        if warm:
            # Fine-tuning: a fresh Adam at the full rate would first walk the parent's
            # parameters away from where they converged.
            hyper = hyper.model_copy(update={"lr": hyper.lr * settings.warm_lr_factor})
        stats = fit(model, examples, hyper, budget, generator, device)
        model.train(False)
        started = time.monotonic()
        ranker = Ranker(settings.top_k, settings.export_block, settings.export_budget_s)
        arrays = model.export(data, ranker)
        export_s = time.monotonic() - started
    metrics = {
        "examples": float(frame.height),
        "examples_dropped": float(data.dropped),
        "train_rows": float(size),
        "warm_rows": float(warm),
        "steps": float(stats.steps),
        "epochs": float(stats.epochs),
        "budget_exhausted": float(stats.budget_exhausted),
        "train_s": stats.seconds,
        "export_s": export_s,
        **ranker.stats,
    }
    if stats.losses:  # no NaN for a run the budget stopped before its first step
        metrics["loss_first_epoch"], metrics["loss"] = stats.losses[0], stats.losses[-1]
    params: dict[str, object] = {
        "model": name,
        **hyper.model_dump(),
        "seed": seed,
        "top_k": settings.top_k,
        "positive_threshold": settings.positive_threshold,
        "device": str(device),
    }
    if stats.budget_exhausted:
        logger.warning("%s: train budget %.1f s hit after %d steps", name, budget, stats.steps)
    return TrainResult(arrays, metrics, params)


def run_seed(seed: int, frame: pl.DataFrame) -> int:
    """The seed of one run: ``seed`` mixed with the window, so that the same window and seed
    give the same model while successive windows shuffle differently (a budget-cut epoch
    would otherwise revisit the same examples every run)."""
    last = frame["timestamp"].max() if "timestamp" in frame.columns and frame.height else 0
    return mmh3.hash64(f"{seed}:{frame.height}:{last!s}", signed=False)[0] >> 1


def fit(
    model: TrainableModel,
    examples: dict[str, np.ndarray],
    hyper: ModelHyperParams,
    budget_s: float,
    generator: torch.Generator,
    device: torch.device,
) -> FitStats:
    """Minibatch Adam over shuffled ``examples`` for ``hyper.epochs`` epochs or until the
    budget ends. Sparse embedding tables get SparseAdam (it updates only the rows a batch
    touches), the other parameters Adam."""
    started = time.monotonic()
    deadline = started + budget_s
    tensors = {k: torch.as_tensor(v).to(device) for k, v in examples.items()}
    n = len(next(iter(tensors.values())))
    optimizers = _optimizers(model, hyper.lr)
    model.train(True)
    stats = FitStats()
    for _ in range(hyper.epochs):
        order = torch.randperm(n, generator=generator)
        total, batches = 0.0, 0
        for start in range(0, n, hyper.batch_size):
            if time.monotonic() >= deadline:
                stats.budget_exhausted = True
                break
            index = order[start : start + hyper.batch_size].to(device)
            loss = model.loss({k: t[index] for k, t in tensors.items()}, generator)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in optimizers:
                opt.step()
            total, batches = total + float(loss.detach()), batches + 1
            stats.steps += 1
        if batches:
            stats.losses.append(total / batches)
        if stats.budget_exhausted:
            break
        stats.epochs += 1
    stats.seconds = time.monotonic() - started
    return stats


def _optimizers(model: TrainableModel, lr: float) -> list[torch.optim.Optimizer]:
    sparse: list[torch.Tensor] = []
    for module in model.modules():  # type: ignore[attr-defined]
        if isinstance(module, nn.Embedding | nn.EmbeddingBag) and module.sparse:
            sparse.append(module.weight)
    ids = {id(p) for p in sparse}
    dense = [p for p in model.parameters() if id(p) not in ids]  # type: ignore[attr-defined]
    out: list[torch.optim.Optimizer] = []
    if sparse:
        out.append(torch.optim.SparseAdam(sparse, lr=lr))
    if dense:
        out.append(torch.optim.Adam(dense, lr=lr))
    return out


@contextmanager
def _deterministic() -> Iterator[None]:
    """torch's deterministic algorithms for the run, restoring the caller's choice after.
    ``warn_only``: an op without a deterministic version (on some GPUs) warns, not fails."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
