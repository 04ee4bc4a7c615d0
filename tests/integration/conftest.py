"""Integration tests run against a real Apache Kafka broker, started once per session when needed.

- ``kafka_bootstrap`` (session): a bootstrap string of a broker that answers metadata. Uses
  ``OMNISTREAM_KAFKA_BOOTSTRAP`` when it points at a live non-local cluster; otherwise the local broker on
  ``OMNISTREAM_BROKER_PORT``: reused when something already serves it (e.g. your ``omnistream kafka up``),
  else started from ``<state_dir>/pytest/kafka``. A broker it cannot start or reach FAILS the test.
- ``kafka_settings`` (session): Settings whose ``kafka_bootstrap`` is that broker.
- ``unique_name`` (function): ``unique_name("orders")`` -> ``"orders-<test>-<8 hex>"`` for topics/groups.

Test sessions running at the same time share the test broker through leases: the last one to finish stops
(and purges) it. A broker started with ``omnistream kafka up`` is never stopped by the tests.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka.errors import KafkaError

from pipeline.kafka_local import (
    LocalKafkaError,
    delete_topics,
    join_shared_broker,
    leave_shared_broker,
    list_topics,
    probe,
)
from pipeline.kafka_local.config import BrokerLayout
from pipeline.settings import Settings, load_settings
from tests.integration.pipeline_env import CREATED
from tests.integration.processes import STARTED

_HERE = Path(__file__).parent
log = logging.getLogger(__name__)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration as ``integration`` (so ``-m 'not integration'`` works)."""
    for item in items:
        if _HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def test_broker_settings() -> Settings:
    """Settings of the local test broker: the environment's, with state under ``<state_dir>/pytest``."""
    settings = load_settings()
    return settings.model_copy(update={"state_dir": settings.state_dir / "pytest"})


@pytest.fixture(scope="session")
def kafka_bootstrap(test_broker_settings: Settings) -> Iterator[str]:
    """Bootstrap of a real, metadata-answering Kafka for this session (see the module docstring)."""
    settings = test_broker_settings
    local = BrokerLayout.from_settings(settings).bootstrap
    if settings.kafka_bootstrap != local and probe(settings.kafka_bootstrap, timeout_s=5.0):
        yield settings.kafka_bootstrap
        return
    try:
        result = join_shared_broker(settings)
    except LocalKafkaError as error:
        details = f"\n{error.details}" if error.details else ""
        pytest.fail(f"integration tests need a Kafka broker and none could be started: {error}{details}")
    try:
        yield result.bootstrap
    finally:
        leave_shared_broker(settings)


@pytest.fixture(scope="session")
def kafka_settings(test_broker_settings: Settings, kafka_bootstrap: str) -> Settings:
    """Settings pointing at the session's broker (``kafka_bootstrap``); state under the test state dir."""
    return test_broker_settings.model_copy(update={"kafka_bootstrap": kafka_bootstrap})


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Factory of names unique to this test and call: legal Kafka topic / group names (<= 200 chars)."""
    test = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name).strip("-")[:60]

    def make(prefix: str = "t") -> str:
        return f"{prefix}-{test}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture(scope="module", autouse=True)
def _module_cleanup() -> Iterator[None]:
    """Once a test module is done: kill the processes a failed test left running (they would compete with the
    next tests for the CPU), and delete the topics of the deployments the module created (a broker that keeps
    every test's topics, thousands of partitions per suite, slows down and eventually runs out of heap)."""
    first, first_proc = len(CREATED), len(STARTED)
    yield
    for proc in STARTED[first_proc:]:
        if proc.alive():
            proc.kill()
    by_bootstrap: dict[str, list[str]] = {}
    for bootstrap, prefix, app_id in CREATED[first:]:
        by_bootstrap.setdefault(bootstrap, []).extend((prefix, f"{app_id}-"))
    for bootstrap, starts in by_bootstrap.items():
        if not probe(bootstrap, timeout_s=2.0):  # a broker of the module's own, already stopped
            continue
        try:
            names = [t for t in list_topics(bootstrap) if t.startswith(tuple(starts))]
            delete_topics(bootstrap, names)
        except (LocalKafkaError, KafkaError) as error:  # clean-up only: the tests' results stand
            log.warning("could not delete the test topics on %s: %s", bootstrap, error)
