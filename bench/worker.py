"""``omnistream worker`` with the bench's topic naming (see ``bench.topics``): ``python -m bench.worker N``.

Runs the project's own worker command (``pipeline.cli.worker.worker``: same app factory, same Faust worker,
same shutdown) with one difference: its settings are ``SharedInputSettings``, so the channel topics come from
``OMNISTREAM_INPUT_PREFIX`` and every other topic from ``OMNISTREAM_TOPIC_PREFIX``. Everything else is
configured through the usual ``OMNISTREAM_*`` environment variables. ``BENCH_TUNING`` (JSON of
``pipeline.app.WorkerTuning`` fields, e.g. ``{"journey_within_s": 0.05}``) tries other micro-batching knobs.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from functools import partial

import click

from bench.topics import SharedInputSettings


def main(argv: list[str]) -> None:
    # pipeline.cli re-exports the command function under the submodule's name, so fetch the module itself.
    cli_worker = importlib.import_module("pipeline.cli.worker")

    def load(**overrides: object) -> SharedInputSettings:
        # Same rule as pipeline.settings.load_settings: None is a flag that was not given.
        given = {name: value for name, value in overrides.items() if value is not None}
        return SharedInputSettings(**given)  # type: ignore[arg-type]

    cli_worker.load_settings = load
    tuning = json.loads(os.environ.get("BENCH_TUNING") or "{}")
    if tuning:
        app = importlib.import_module("pipeline.app")
        app.WorkerTuning = partial(app.WorkerTuning, **tuning)  # type: ignore[assignment]
    worker_id = int(argv[1]) if len(argv) > 1 else 0
    try:
        cli_worker.worker(worker_id=worker_id, log_level="WARNING")
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main(sys.argv)
