"""A misspelled OMNISTREAM_* variable is refused with the closest setting; the development secret is refused
outside development."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from pipeline.settings import DEV_PII_SECRET, Settings, UnknownSettingError, check_names, unsafe_secret

REPO = Path(__file__).resolve().parents[2]


def test_a_misspelled_setting_names_the_closest_one() -> None:
    with pytest.raises(UnknownSettingError, match=r"OMNISTREAM_PII_SECRT \(did you mean OMNISTREAM_PII_SECRET\?\)"):
        check_names({"OMNISTREAM_PII_SECRT": "x", "OMNISTREAM_PARTITIONS": "4", "PATH": "/bin"})


def test_every_unknown_name_is_listed_and_a_far_one_gets_no_guess() -> None:
    with pytest.raises(UnknownSettingError) as err:
        check_names({"OMNISTREAM_ZZZZ": "1", "OMNISTREAM_KAFKA_BOOTSTRAPS": "h:1"})
    text = str(err.value)
    assert "; OMNISTREAM_ZZZZ. The settings are listed in README.md" in text
    assert "OMNISTREAM_KAFKA_BOOTSTRAPS (did you mean OMNISTREAM_KAFKA_BOOTSTRAP?)" in text


def test_real_settings_and_compose_variables_pass() -> None:
    names = {f"OMNISTREAM_{name.upper()}": "" for name in Settings.model_fields}
    check_names({**names, "OMNISTREAM_IMAGE_TAG": "1.0", "OMNISTREAM_PII_SECRET_FILE": "/run/secret"})


def test_the_development_secret_is_refused_unless_in_development() -> None:
    assert unsafe_secret(Settings(pii_secret=SecretStr(DEV_PII_SECRET), development=False)) is not None
    assert unsafe_secret(Settings(pii_secret=SecretStr(DEV_PII_SECRET), development=True)) is None
    assert unsafe_secret(Settings(pii_secret=SecretStr("a-real-secret-of-our-own"), development=False)) is None


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_the_command_line_exits_78_on_a_typo(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OMNISTREAM_PII_SECRT": "s3cret"}
    done = _run("kafka", "status", env=env)
    assert done.returncode == 78, done.stderr
    assert "did you mean OMNISTREAM_PII_SECRET?" in done.stderr and "s3cret" not in done.stderr


@pytest.mark.parametrize("command", [["worker"], ["sink", "--db", "w.duckdb"]])
def test_worker_and_sink_refuse_the_development_secret(tmp_path: Path, command: list[str]) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OMNISTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:9"}
    done = _run(*command, env=env)
    assert done.returncode == 78, done.stderr
    assert "development secret" in done.stderr and "OMNISTREAM_DEVELOPMENT" in done.stderr
