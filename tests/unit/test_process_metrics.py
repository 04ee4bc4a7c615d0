"""Process-level series every omnistream process exports: build info, process/GC collectors, memory limit."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pipeline.metrics import memory_limit_bytes, process_metrics


@pytest.mark.parametrize(
    ("files", "want"),
    [
        ({"memory.max": "536870912\n"}, 536870912.0),  # cgroup v2 with a limit
        ({"memory.max": "max\n"}, math.nan),  # cgroup v2 without one
        ({"memory/memory.limit_in_bytes": "1073741824\n"}, 1073741824.0),  # cgroup v1
        ({"memory/memory.limit_in_bytes": "9223372036854771712\n"}, math.nan),  # v1's "unlimited"
        ({}, math.nan),  # no cgroup files at all
    ],
)
def test_memory_limit_is_read_from_cgroup_v2_or_v1(tmp_path: Path, files: dict[str, str], want: float) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    got = memory_limit_bytes(tmp_path)
    assert got == want or (math.isnan(got) and math.isnan(want))


def test_every_process_exports_build_info_process_series_and_its_memory_limit() -> None:
    registry = CollectorRegistry()
    process_metrics(registry, "sink")
    names = {m.name for m in registry.collect()}
    assert {"omnistream_build", "omnistream_memory_limit_bytes", "process_resident_memory_bytes",
            "python_gc_objects_collected"} <= names  # fmt: skip
    assert registry.get_sample_value("omnistream_build_info", {**_build_labels(registry), "role": "sink"}) == 1.0


def _build_labels(registry: CollectorRegistry) -> dict[str, str]:
    sample = next(s for m in registry.collect() if m.name == "omnistream_build" for s in m.samples)
    return dict(sample.labels)
