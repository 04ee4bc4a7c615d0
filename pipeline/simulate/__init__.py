"""``omnistream simulate``: realistic, deterministic omnichannel traffic with ground truth.

Pure generation (no IO, no clock) lives in :mod:`~pipeline.simulate.simulation` and the modules it
composes: catalog (products, stores, campaigns), population (people and their plans), journeys (events
per session, merged in event-time order), faults (bad input, duplicates, late delivery). truth records
what an evaluator needs; producer is the only module that talks to Kafka.
"""

from pipeline.simulate.config import BAD_KINDS, SimConfig
from pipeline.simulate.messages import EXPECTED_OUTCOME, KINDS, OUTCOMES, Encoder, SimMessage, encode_message
from pipeline.simulate.simulation import Simulation, generate
from pipeline.simulate.truth import TruthRecorder, expected_for

__all__ = [
    "BAD_KINDS",
    "EXPECTED_OUTCOME",
    "KINDS",
    "OUTCOMES",
    "Encoder",
    "SimConfig",
    "SimMessage",
    "Simulation",
    "TruthRecorder",
    "encode_message",
    "expected_for",
    "generate",
]
