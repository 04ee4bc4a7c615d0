"""Peer stream processors: the same session job run by Quix Streams, Bytewax and a hand-written aiokafka loop.

The jobs (``quix_job``, ``bytewax_job``, ``aiokafka_job``) run in a virtualenv of their own
(``<state_dir>/bench/peers-venv``, see ``venv``) with ``python -m bench.peers.<job> SPEC RESULT``; ``core``
is what they share (Confluent Avro decode, customer key, session step, timing). ``runner`` is the parent side
that runs them and turns their results into rows of bench/RESULTS.md.

This file imports nothing on purpose: the jobs import ``bench.peers.core`` from the peers' virtualenv, which
has none of the project's dependencies.
"""
