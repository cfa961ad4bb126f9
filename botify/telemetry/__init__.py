"""What every long-running botify process exports to Prometheus, beyond its own metrics.

``process_registry`` gives a registry with the process collectors (CPU, RSS, open fds, GC);
``MetricsServer`` serves one on ``/metrics`` from a thread, for the processes that have no
HTTP server of their own (stream workers, the trainer); ``ConsumerLagMonitor`` keeps a
consumer group's lag per partition as a gauge.
"""

from botify.telemetry.lag import ConsumerLagMonitor
from botify.telemetry.process import MetricsServer, precreate, process_registry

__all__ = ["ConsumerLagMonitor", "MetricsServer", "precreate", "process_registry"]
