"""The omnistream benchmark harness (issue 7): run by hand with ``make bench`` or ``python -m bench [--quick]``.

One run uses the local broker, loads one fixed simulated workload into the ``bench.`` input topics once (reused
by later runs), then measures on those same topics: ``floor`` (bare aiokafka + Avro decode), ``peers`` (the same
session job in Quix Streams, Bytewax and aiokafka + dict, from a virtualenv of their own), ``faust_ceiling``
(a bare Faust agent), ``naive`` (one table write per event per concern), ``pipeline_run`` (the real workers,
1 then 2), ``sink`` (DuckDB rows/s), ``latency`` (event -> signal / snapshot at half the max rate) and memory
(``memory``: RSS, state bytes per customer); ``report`` writes bench/RESULTS.md. See bench/README.md.
Benchmarks are never run as timed tests; the unit tests import only pure parts (``peers.core``, the report's
formatting, ``peers.runner.row``), never run a measurement.
"""
