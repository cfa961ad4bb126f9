"""The one place that builds Kafka clients (faust's own consumer aside).

Every client names its service in ``client.id`` (``client_id``: ``botify-api``,
``botify-stream``, ``botify-trainer``, ``botify-export``, ``botify-cli``), so a broker's logs,
quotas and metrics tell the services apart; ``KafkaSettings.client_id_prefix`` replaces
``botify`` (say, to tell two deployments apart on one cluster). Admin clients too: the
caller's service (``botify-admin`` when none is given), ``<service>-lag`` for lag readers.

- ``clients``: client configs, ``build_consumer``, ``produce_with_room``;
- ``admin``: topics, a topic's identity, reachability, consumer-group lag;
- ``publisher``: ``ListenPublisher``, the API's never-blocking producer;
- ``delivering``: ``DeliveringProducer``, for records that must be delivered before the
  caller goes on (the stream's examples and dead letters).
"""

from botify.kafka.admin import (
    ConsumerLagReader,
    PartitionLag,
    broker_reachable,
    create_topics,
    ensure_topics,
    topic_identity,
)
from botify.kafka.clients import (
    API,
    CLI,
    EXPORT,
    STREAM,
    TRAINER,
    Headers,
    build_consumer,
    client_id,
    consumer_config,
    produce_with_room,
    producer_config,
)
from botify.kafka.delivering import DeliveringProducer
from botify.kafka.publisher import (
    GIVEN_UP_AT_SHUTDOWN,
    MAX_CARRIES,
    STUCK_IN_REBUILT,
    ListenPublisher,
    PublisherStats,
)

__all__ = [
    "API",
    "CLI",
    "EXPORT",
    "GIVEN_UP_AT_SHUTDOWN",
    "MAX_CARRIES",
    "STREAM",
    "STUCK_IN_REBUILT",
    "TRAINER",
    "ConsumerLagReader",
    "DeliveringProducer",
    "Headers",
    "ListenPublisher",
    "PartitionLag",
    "PublisherStats",
    "broker_reachable",
    "build_consumer",
    "client_id",
    "consumer_config",
    "create_topics",
    "ensure_topics",
    "produce_with_room",
    "producer_config",
    "topic_identity",
]
