"""A/B analysis of listen logs: the course's method (reference §4), columnar, plus the checks
it lacked. ``load_log`` reads and normalises; ``analyze`` is pure and returns a report that
``render`` draws and ``command`` wires to the CLI."""

from botify.analysis.load import AnalysisInputError, ArmLog, load_log, normalize
from botify.analysis.report import (
    COURSE_COLUMNS,
    AnalysisReport,
    CourseRow,
    analyze,
    analyze_file,
)
from botify.analysis.sessions import METRICS, build_sessions, user_metrics

__all__ = [
    "COURSE_COLUMNS",
    "METRICS",
    "AnalysisInputError",
    "AnalysisReport",
    "ArmLog",
    "CourseRow",
    "analyze",
    "analyze_file",
    "build_sessions",
    "load_log",
    "normalize",
    "user_metrics",
]
