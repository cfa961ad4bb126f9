"""What every long-running botify process exports to Prometheus, beyond its own metrics.

``process_registry`` gives a registry with the process collectors (CPU, RSS, open fds, GC);
``MetricsServer`` serves one on ``/metrics`` from a thread, for the processes that have no
HTTP server of their own (stream workers, the trainer), with a ``/health`` that turns 503
when the process's main loop stops going round (``Heartbeat``); ``ConsumerLagMonitor`` keeps a
consumer group's lag per partition as a gauge.
"""

from botify.telemetry.lag import ConsumerLagMonitor
from botify.telemetry.process import Heartbeat, MetricsServer, precreate, process_registry

__all__ = ["ConsumerLagMonitor", "Heartbeat", "MetricsServer", "precreate", "process_registry"]
