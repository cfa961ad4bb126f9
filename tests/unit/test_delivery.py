"""DeliveryTracker: the oldest pending event's age and recent failures from counts."""

from __future__ import annotations

from botify.delivery import DeliveryTracker


def test_nothing_pending_is_healthy_with_age_zero() -> None:
    tracker = DeliveryTracker(stall_s=10, failure_window_s=30)
    tracker.enqueued = 5
    status = tracker.sample(100.0, outstanding=0)
    assert status.ok and status.pending == 0 and status.pending_age_s == 0


def test_the_age_is_that_of_the_oldest_event_still_pending() -> None:
    tracker = DeliveryTracker(stall_s=10, failure_window_s=30)
    tracker.enqueued = 3
    tracker.sample(0.0, outstanding=3)  # three events in at t=0
    tracker.enqueued = 5
    assert tracker.sample(4.0, outstanding=5).pending_age_s == 4.0
    # The first three left: the oldest pending event came in by t=4.
    assert tracker.sample(6.0, outstanding=2).pending_age_s == 2.0
    assert tracker.sample(7.0, outstanding=0).pending_age_s == 0.0


def test_a_producer_that_delivers_nothing_is_reported_stalled() -> None:
    tracker = DeliveryTracker(stall_s=10, failure_window_s=30)
    for t in range(12):
        tracker.enqueued += 1
        status = tracker.sample(float(t), outstanding=tracker.enqueued)
    assert not status.ok and status.pending_age_s == 11.0
    assert "waited 11.0 s" in status.detail


def test_busy_but_delivering_is_not_a_stall() -> None:
    tracker = DeliveryTracker(stall_s=1, failure_window_s=30)
    for t in range(100):
        tracker.enqueued += 1000
        # Always about a tick's worth of events in flight, never the same ones.
        status = tracker.sample(t * 0.05, outstanding=1000)
    assert status.ok and status.pending_age_s <= 0.05


def test_failures_make_it_unhealthy_until_a_delivery_succeeds_or_the_window_passes() -> None:
    tracker = DeliveryTracker(stall_s=10, failure_window_s=30)
    tracker.enqueued = 2
    tracker.sample(0.0, outstanding=2)
    tracker.failure(1.0)
    failing = tracker.sample(1.0, outstanding=1)
    assert not failing.ok and failing.failing and failing.failed == 1
    assert "failed" in failing.detail
    # The other event delivered afterwards: healthy again.
    assert tracker.sample(2.0, outstanding=0).ok
    tracker.failure(3.0)
    assert not tracker.sample(3.0, outstanding=0).ok
    assert tracker.sample(40.0, outstanding=0).ok
