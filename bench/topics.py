"""Topic naming of the bench: every measurement reads the SAME loaded input topics, but owns all its other topics.

The pipeline names every topic ``settings.topic(name)``; ``SharedInputSettings`` keeps that for everything
except the four channel topics, which it names with ``input_prefix``. So a measurement's workers consume the one
loaded workload with their own consumer group and write ``customer-events``, ``resolved-events``, ``sessions``...
under a prefix of their own — a second measurement never re-reads the first one's intermediate topics, and the
identity writer never replays another run's links. Topics are created with the project's
``pipeline.topics.ensure_pipeline_topics`` (per-topic partitions and configs; ``identity-links`` has 1 partition).
"""

from __future__ import annotations

from pydantic import Field

from pipeline.drain import CONSUMED
from pipeline.kafka_local import delete_topics, list_topics
from pipeline.settings import CHANNELS, Settings
from pipeline.topics import ensure_pipeline_topics

#: Environment variable (read by pydantic-settings through the OMNISTREAM_ prefix) naming the input prefix.
INPUT_PREFIX_ENV = "OMNISTREAM_INPUT_PREFIX"


class SharedInputSettings(Settings):
    """Settings whose channel topics use ``input_prefix``; every other topic keeps ``topic_prefix``."""

    input_prefix: str = Field("", description="Prefix of the four channel (input) topics")

    def topic(self, name: str) -> str:
        if name in CHANNELS:
            return f"{self.input_prefix}{name}"
        return super().topic(name)


def ensure_measurement_topics(settings: Settings) -> dict[str, int]:
    """Create the measurement's topics (the inputs exist already) the way the project does."""
    return ensure_pipeline_topics(settings, settings.kafka_bootstrap)


def consumed_topics(settings: Settings) -> list[str]:
    """What the worker group consumes (``pipeline.drain``'s list): its lag says whether it has caught up."""
    return [settings.topic(t) for t in CONSUMED]


def drop_topics(bootstrap: str, *prefixes: str) -> list[str]:
    """Delete every topic whose name starts with one of ``prefixes`` (a measurement's outputs, changelogs)."""
    names = [t for t in list_topics(bootstrap) if any(t.startswith(p) for p in prefixes if p)]
    return delete_topics(bootstrap, names) if names else []
