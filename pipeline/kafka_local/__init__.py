"""The real local Apache Kafka broker: single-node KRaft from the official jars, fetched with Maven.

Public API::

    start_broker(settings) -> StartResult      # idempotent `kafka up` (without topics)
    stop_broker(settings, purge=False)         # `kafka down`
    broker_status(settings) -> BrokerStatus    # `kafka status`
    wait_ready / ensure_topics / delete_topics / list_topics (admin helpers, any bootstrap)

Every failure a user can fix (no java, no mvn, Maven error, busy port, broker died) is a LocalKafkaError
with a one-line message. Importing this package has no side effects.
"""

from pipeline.kafka_local.admin import delete_topics, ensure_topics, list_topics, probe, wait_ready
from pipeline.kafka_local.broker import BrokerStatus, StartResult, broker_status, start_broker, stop_broker
from pipeline.kafka_local.config import BrokerLayout, LocalKafkaError, parse_heap
from pipeline.kafka_local.jars import ensure_jars
from pipeline.kafka_local.shared import join_shared_broker, leave_shared_broker

__all__ = [
    "BrokerLayout",
    "BrokerStatus",
    "LocalKafkaError",
    "StartResult",
    "broker_status",
    "delete_topics",
    "ensure_jars",
    "ensure_topics",
    "join_shared_broker",
    "leave_shared_broker",
    "list_topics",
    "parse_heap",
    "probe",
    "start_broker",
    "stop_broker",
    "wait_ready",
]
