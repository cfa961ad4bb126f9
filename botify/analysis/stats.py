"""The statistics, as pure functions of per-user values (numpy arrays in, numbers out).

``welch`` is the course's interval (§4 of the reference): Welch two-sample t, sample
variances (ddof=1), Welch–Satterthwaite degrees of freedom. The rest is what the course
lacked: a delta-method interval for the relative effect, Holm's step-down correction, a
sample-ratio-mismatch test and the CUPED adjustment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

NAN = float("nan")


@dataclass(frozen=True)
class WelchInterval:
    """Δ = mean_T − mean_C with its two-sided interval half-width ``ci``."""

    control_mean: float
    treatment_mean: float
    delta: float
    ci: float
    dof: float
    p_value: float

    def relative(self) -> tuple[float, float, float]:
        """(effect, lower, upper) in percent of the control mean, as the course reported."""
        base = self.control_mean
        if base == 0 or math.isnan(base):
            return NAN, NAN, NAN
        return (
            self.delta / base * 100,
            (self.delta - self.ci) / base * 100,
            (self.delta + self.ci) / base * 100,
        )

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (NaN intervals are never significant)."""
        return bool((self.delta + self.ci) * (self.delta - self.ci) > 0)


def welch(treatment: np.ndarray, control: np.ndarray, alpha: float = 0.05) -> WelchInterval:
    n_t, n_c = len(treatment), len(control)
    m_t = float(np.mean(treatment)) if n_t else NAN
    m_c = float(np.mean(control)) if n_c else NAN
    v_t = float(np.var(treatment, ddof=1)) if n_t > 1 else NAN
    v_c = float(np.var(control, ddof=1)) if n_c > 1 else NAN
    delta = m_t - m_c
    se2 = v_t / n_t + v_c / n_c if n_t > 1 and n_c > 1 else NAN
    if not se2 > 0:  # NaN, or both arms constant: no interval to speak of
        return WelchInterval(m_c, m_t, delta, NAN, NAN, NAN)
    dof = se2**2 / ((v_t / n_t) ** 2 / (n_t - 1) + (v_c / n_c) ** 2 / (n_c - 1))
    ci = float(stats.t.ppf(1 - alpha / 2, dof)) * math.sqrt(se2)
    p_value = float(2 * stats.t.sf(abs(delta) / math.sqrt(se2), dof))
    return WelchInterval(m_c, m_t, delta, ci, float(dof), p_value)


def delta_method_relative(
    treatment: np.ndarray, control: np.ndarray, alpha: float = 0.05
) -> tuple[float, float, float]:
    """(effect, lower, upper) in percent for mean_T/mean_C − 1, normal interval.

    Var(m_T/m_C) ≈ Var(m_T)/μ_C² + μ_T²·Var(m_C)/μ_C⁴ (the arms are independent), so the
    noise of the control mean widens the interval, unlike the course's Δ/mean_C.
    """
    n_t, n_c = len(treatment), len(control)
    if n_t < 2 or n_c < 2:
        return NAN, NAN, NAN
    m_t, m_c = float(np.mean(treatment)), float(np.mean(control))
    if m_c == 0:
        return NAN, NAN, NAN
    var_t = float(np.var(treatment, ddof=1)) / n_t
    var_c = float(np.var(control, ddof=1)) / n_c
    ratio = m_t / m_c
    se = math.sqrt(var_t / m_c**2 + m_t**2 * var_c / m_c**4)
    z = float(stats.norm.ppf(1 - alpha / 2))
    return (ratio - 1) * 100, (ratio - 1 - z * se) * 100, (ratio - 1 + z * se) * 100


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in input order; NaN stays NaN, outside the family."""
    present = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    present.sort()
    m = len(present)
    adjusted = [NAN] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class SampleRatioCheck:
    """Chi-square goodness of fit of users per arm against the equal split."""

    counts: dict[str, int]
    chi2: float
    p_value: float
    threshold: float

    @property
    def mismatch(self) -> bool:
        return bool(self.p_value < self.threshold)


def sample_ratio(counts: dict[str, int], threshold: float = 0.001) -> SampleRatioCheck:
    """``counts`` should list every arm of the split, including empty ones (count 0)."""
    observed = np.array(list(counts.values()), dtype=float)
    if len(observed) < 2 or observed.sum() == 0:
        return SampleRatioCheck(dict(counts), NAN, NAN, threshold)
    chi2, p_value = stats.chisquare(observed)
    return SampleRatioCheck(dict(counts), float(chi2), float(p_value), threshold)


def cuped_theta(y: np.ndarray, x: np.ndarray) -> float:
    """θ = cov(X, Y)/var(X); 0 when X does not vary (then CUPED changes nothing)."""
    if len(x) < 2:
        return 0.0
    var_x = float(np.var(x, ddof=1))
    if not var_x > 0:
        return 0.0
    return float(np.cov(x, y, ddof=1)[0, 1]) / var_x
