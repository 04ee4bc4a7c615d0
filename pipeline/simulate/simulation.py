"""The simulator's entry points: :class:`Simulation` (world + stream) and :func:`generate`.

Guarantees: no IO and no clock; the same :class:`SimConfig` gives the same messages in the same order,
every time and in every process, and :meth:`Simulation.messages` can be called repeatedly (each call
replays the stream from the start, e.g. once to count and once to produce).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property

from pipeline.simulate.catalog import Catalog, build_catalog
from pipeline.simulate.config import SimConfig
from pipeline.simulate.faults import FaultInjector
from pipeline.simulate.journeys import JourneyEngine
from pipeline.simulate.messages import SimMessage
from pipeline.simulate.population import Person, build_population, shared_devices


class Simulation:
    """The simulated world for one config: catalogue, campaigns, people, and the message stream."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config

    @cached_property
    def catalog(self) -> Catalog:
        """Products, stores (with kiosks) and campaigns."""
        return build_catalog(self.config)

    @cached_property
    def population(self) -> tuple[Person, ...]:
        """Every person, by index."""
        return build_population(self.config, self.catalog)

    @cached_property
    def shared_devices(self) -> dict[str, str]:
        """Device ids used by several people (kiosks, family tablets) -> ``store_kiosk``/``family_tablet``."""
        return shared_devices(self.config, self.catalog)

    def valid_events(self) -> Iterator[SimMessage]:
        """Only the valid events, in event-time order (no faults, no late delivery, no duplicates)."""
        return JourneyEngine(self.config, self.catalog, self.population).events()

    def messages(self) -> Iterator[SimMessage]:
        """The full stream to produce, in delivery order."""
        return FaultInjector(self.config, self.catalog).apply(self.valid_events())

    def count(self) -> int:
        """How many messages :meth:`messages` yields (generates them; nothing is kept)."""
        return sum(1 for _ in self.messages())


def generate(config: SimConfig) -> Iterator[SimMessage]:
    """The message stream for ``config``: pure, deterministic, lazy."""
    return Simulation(config).messages()
