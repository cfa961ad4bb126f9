"""Whether a producer is delivering: the age of its oldest pending event and its recent
failures, from counts its poll thread samples (no per-event bookkeeping on the hot path).

Events are counted when handed to the producer (``enqueued``) and when they fail; a sample
adds how many are still outstanding. Every sample leaves a mark (time, enqueued so far).
Events leave the producer roughly in the order they entered it, so once ``enqueued -
outstanding`` reaches a mark's count, every event enqueued by that mark's time is done; the
oldest mark not yet reached dates the oldest pending event, to within one sample.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    """Whether listen events reach the broker (not merely whether it answers)."""

    # One sample of a producer's delivery, for the /next policy, and for /health as is:
    # this docstring and the descriptions are the API schema's.

    ok: bool
    pending: Annotated[
        int, Field(description="Events handed to the producer and not yet delivered.")
    ]
    pending_age_s: Annotated[
        float, Field(description="How long the oldest pending event has waited.")
    ]
    failed: Annotated[int, Field(description="Events whose delivery failed since the start.")]
    failing: Annotated[
        bool, Field(description="The latest deliveries failed, none succeeded since.")
    ]
    producers_rebuilt: Annotated[
        int, Field(description="Producers rebuilt after a fence or a stall.")
    ] = 0
    detail: str = ""


HEALTHY = DeliveryStatus(ok=True, pending=0, pending_age_s=0.0, failed=0, failing=False)


class DeliveryTracker:
    """Counts of one producer over its whole life (rebuilt producers included)."""

    def __init__(self, stall_s: float, failure_window_s: float, max_marks: int = 100_000) -> None:
        self.stall_s = stall_s
        self.failure_window_s = failure_window_s
        self.enqueued = 0
        self.failed = 0
        self.rebuilt = 0
        self._max_marks = max_marks
        self._marks: deque[tuple[float, int]] = deque()
        self._delivered = 0
        self._last_failure: float | None = None
        self._last_progress: float | None = None

    def failure(self, now: float) -> None:
        self.failed += 1
        self._last_failure = now

    def pending_age(self, now: float, outstanding: int) -> float:
        """Seconds the oldest outstanding event has waited (0 when none is)."""
        enqueued = self.enqueued
        marks = self._marks
        # A full deque keeps its oldest marks: the age must not shrink because of the bound.
        if (not marks or marks[-1][1] != enqueued) and len(marks) < self._max_marks:
            marks.append((now, enqueued))
        done = enqueued - outstanding
        while marks and marks[0][1] <= done:
            marks.popleft()
        delivered = done - self.failed
        if delivered > self._delivered:
            self._delivered = delivered
            self._last_progress = now
        if outstanding <= 0 or not marks:
            return 0.0
        return max(0.0, now - marks[0][0])

    def sample(self, now: float, outstanding: int) -> DeliveryStatus:
        age = self.pending_age(now, outstanding)
        last_failure, last_progress = self._last_failure, self._last_progress
        failing = (
            last_failure is not None
            and now - last_failure <= self.failure_window_s
            and (last_progress is None or last_progress < last_failure)
        )
        stalled = age > self.stall_s
        detail = "; ".join(
            why
            for why, on in (
                (f"the oldest pending event has waited {age:.1f} s", stalled),
                ("the latest deliveries failed", failing),
            )
            if on
        )
        return DeliveryStatus(
            ok=not (stalled or failing),
            pending=max(0, outstanding),
            pending_age_s=round(age, 3),
            failed=self.failed,
            failing=failing,
            producers_rebuilt=self.rebuilt,
            detail=detail,
        )
