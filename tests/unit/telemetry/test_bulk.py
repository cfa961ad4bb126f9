from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from botify.telemetry.bulk import BulkHistogram

BUCKETS = (0.01, 0.1, 1.0, 10.0)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for m in registry.collect()
        for s in m.samples
        if not s.name.endswith("_created")  # off in every botify process (process_registry)
    }


def test_a_batch_exports_what_observing_each_value_would() -> None:
    values = np.array([0.0, 0.01, 0.05, 0.1, 0.5, 1.0, 3.0, 10.0, 11.0, 1e6])
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    bulk = BulkHistogram("d_seconds", "doc", BUCKETS, ours)
    one_by_one = Histogram("d_seconds", "doc", buckets=BUCKETS, registry=theirs)
    bulk.observe_many(values[:4])
    bulk.observe_many(values[4:])
    bulk.observe_many(np.array([]))
    for v in values:
        one_by_one.observe(float(v))
    assert samples(ours) == samples(theirs)
    assert ours.get_sample_value("d_seconds_bucket", {"le": "0.01"}) == 2  # le: 0.0 and 0.01
    assert ours.get_sample_value("d_seconds_count") == len(values)
