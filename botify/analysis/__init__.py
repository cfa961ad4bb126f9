"""A/B analysis of listen logs: the course's method (reference.md §4), exactly, plus the
checks it lacked (sample-ratio mismatch, delta-method relative intervals, Holm, CUPED)."""

from botify.analysis.log import load_log
from botify.analysis.sessions import user_metrics
from botify.analysis.stats import METRICS, AnalysisResult, analyze

__all__ = ["METRICS", "AnalysisResult", "analyze", "load_log", "user_metrics"]
