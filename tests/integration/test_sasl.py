"""SASL/SCRAM end to end: a second local broker of this test's own with a SCRAM-SHA-512 listener.

The broker (tmp dir, free ports) has a PLAINTEXT listener for the test's own set-up and checks, and a
SASL_PLAINTEXT listener that the worker must use with its credentials. The SCRAM user is created in the
KRaft metadata at format time (``kafka-storage format --add-scram``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.kafka_local import start_broker, stop_broker
from pipeline.settings import load_settings
from tests.integration.pipeline_env import PipelineEnv, expected_failed, free_port
from tests.integration.processes import Proc

USER = "omnistream-it"
PASSWORD = "scram-Secret-4711"
MECHANISM = "SCRAM-SHA-512"


@pytest.fixture(scope="module")
def scram_broker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """(plain, sasl) bootstraps of a fresh broker; ``kafka_bootstrap`` only makes sure the jars are cached."""
    root = tmp_path_factory.mktemp("scram")
    plain, sasl, ctrl = free_port(), free_port(), free_port()
    settings = load_settings(state_dir=root, broker_port=plain, controller_port=ctrl, partitions=2)
    props = {
        "listeners": f"PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl},CONTROLLER://127.0.0.1:{ctrl}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": MECHANISM,
        f"listener.name.sasl_plaintext.{MECHANISM.lower()}.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
    }
    scram = f"{MECHANISM}=[name={USER},password={PASSWORD}]"
    start_broker(settings, extra_properties=props, format_args=["--add-scram", scram])
    try:
        yield {"plain": f"127.0.0.1:{plain}", "sasl": f"127.0.0.1:{sasl}", "root": str(root)}
    finally:
        stop_broker(settings, purge=True)


def sasl_env(sasl_bootstrap: str, **extra: str) -> dict[str, str]:
    return {
        "OMNISTREAM_KAFKA_BOOTSTRAP": sasl_bootstrap,
        "OMNISTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "OMNISTREAM_KAFKA_SASL_MECHANISM": MECHANISM,
        "OMNISTREAM_KAFKA_SASL_USERNAME": USER,
        **extra,
    }


def test_worker_with_scram_credentials_processes_events(scram_broker: dict[str, str], tmp_path: Path) -> None:
    env = PipelineEnv.create(scram_broker["plain"], tmp_path, partitions=2)
    truth = env.simulate("--customers", "60", "--days", "2", "--seed", "5", "--bad-share", "0.05")
    secret_file = tmp_path / "sasl-password"
    secret_file.write_text(PASSWORD + "\n")
    extra = sasl_env(scram_broker["sasl"], OMNISTREAM_KAFKA_SASL_PASSWORD_FILE=str(secret_file))
    worker = env.start_worker("scram-worker", **extra)
    try:
        want = int(truth["expected"]["unique_valid_events"]) + expected_failed(truth)
        env.wait_for_outputs(want, timeout_s=180, worker=worker)  # read back over the PLAINTEXT listener
    finally:
        code = worker.terminate()
    log = worker.log_path.read_text(errors="replace")
    assert code == 0, worker.log_tail()
    assert f"SASL_PLAINTEXT, {MECHANISM} as '{USER}'" in log
    assert PASSWORD not in log
    summary = env.summary()
    assert summary.canonical_total == truth["expected"]["unique_valid_events"]


def test_wrong_password_stops_the_worker_with_a_clear_error(scram_broker: dict[str, str], tmp_path: Path) -> None:
    env = PipelineEnv.create(scram_broker["plain"], tmp_path, partitions=2)
    wrong = "not-the-password"
    started = time.monotonic()
    worker = Proc(["worker"], {**env.env(), **sasl_env(scram_broker["sasl"], OMNISTREAM_KAFKA_SASL_PASSWORD=wrong)},
                  tmp_path / "wrong.log")  # fmt: skip
    code = worker.popen.wait(timeout=90)
    log = worker.log_path.read_text(errors="replace")
    print(f"wrong credentials: exit {code} after {time.monotonic() - started:.1f}s: {log.strip().splitlines()[-1]}")
    assert code == 77, log
    # The broker answers the refusal and closes the socket; the client sees either first (pipeline/security.py).
    said = "refused the credentials" in log or "closed it during SASL authentication" in log
    assert said and USER in log and MECHANISM in log
    assert wrong not in log and "Traceback" not in log


def test_missing_password_is_a_configuration_error(scram_broker: dict[str, str], tmp_path: Path) -> None:
    env = PipelineEnv.create(scram_broker["plain"], tmp_path, partitions=2)
    worker = Proc(["worker"], {**env.env(), **sasl_env(scram_broker["sasl"])}, tmp_path / "nopw.log")
    code = worker.popen.wait(timeout=60)
    log = worker.log_path.read_text(errors="replace")
    assert code == 78, log
    assert "OMNISTREAM_KAFKA_SASL_PASSWORD" in log
