"""Fetching the official Apache Kafka jars with Maven into a cache outside git, once per version."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.kafka_local.config import LocalKafkaError, jar_dir
from pipeline.kafka_local.locking import file_lock

#: Written into ``libs/`` after a complete copy; a directory without it is a half-finished download.
MARKER = ".omnistream-complete"

Report = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def default_pom() -> Path:
    """deploy/local/pom.xml of the source tree this package was imported from."""
    return Path(__file__).resolve().parents[2] / "deploy" / "local" / "pom.xml"


def require_executable(name: str, purpose: str) -> str:
    """Absolute path of ``name`` on PATH; raises LocalKafkaError naming what it is needed for."""
    found = shutil.which(name)
    if found is None:
        raise LocalKafkaError(f"`{name}` not found on PATH: it is needed to {purpose}")
    return found


def cached_libs(cache_dir: Path, version: str) -> Path | None:
    """The jar directory of ``version`` if a previous fetch completed, else None."""
    libs = jar_dir(cache_dir, version) / "libs"
    return libs if (libs / MARKER).is_file() else None


def maven_command(mvn: str, pom: Path, version: str, output_dir: Path) -> list[str]:
    """The Maven invocation that copies Kafka ``version`` and its runtime dependencies into ``output_dir``."""
    return [
        mvn,
        "-q",
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(pom),
        f"-Dkafka.version={version}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={output_dir}",
        "-DincludeScope=runtime",
    ]


def _last_error_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line]
    return (errors or lines or ["(no output)"])[0][:300]


def ensure_jars(
    cache_dir: Path,
    version: str,
    *,
    mvn: str = "mvn",
    pom: Path | None = None,
    report: Report = _quiet,
    timeout_s: float = 900.0,
) -> Path:
    """Return the directory holding Kafka ``version``'s jars, fetching them with Maven when not cached.

    Guarantees: the returned directory holds a *complete* copy (Maven writes into a scratch directory
    that is renamed into place and only then marked complete), concurrent callers fetch once (file lock),
    and a failure raises LocalKafkaError with Maven's first error line, leaving no half-filled ``libs``.
    """
    libs = cached_libs(cache_dir, version)
    if libs is not None:
        return libs
    version_dir = jar_dir(cache_dir, version)
    version_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(version_dir / ".lock"):
        libs = cached_libs(cache_dir, version)
        if libs is not None:  # another process finished the fetch while we waited for the lock
            return libs
        pom = pom or default_pom()
        if not pom.is_file():
            raise LocalKafkaError(f"Maven pom for the broker jars not found at {pom}")
        mvn_path = require_executable(mvn, f"fetch the Kafka {version} jars (they are not cached yet)")
        scratch = version_dir / "libs.partial"
        shutil.rmtree(scratch, ignore_errors=True)
        report(f"fetching Kafka {version} jars with Maven into {version_dir} …")
        started = time.monotonic()
        try:
            done = subprocess.run(
                maven_command(mvn_path, pom, version, scratch),
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(scratch, ignore_errors=True)
            raise LocalKafkaError(f"Maven did not finish fetching Kafka {version} within {timeout_s:.0f} s") from exc
        output = done.stdout + done.stderr
        if done.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise LocalKafkaError(
                f"Maven failed (exit {done.returncode}) fetching Kafka {version}: {_last_error_line(output)}",
                details=output[-4000:],
            )
        jars = sorted(scratch.glob("kafka_2.13-*.jar"))
        if not jars:
            shutil.rmtree(scratch, ignore_errors=True)
            raise LocalKafkaError(f"Maven finished but no kafka_2.13 jar for {version} is in {scratch}")
        target = version_dir / "libs"
        shutil.rmtree(target, ignore_errors=True)
        scratch.rename(target)
        count = len(list(target.glob("*.jar")))
        (target / MARKER).write_text(f"kafka {version}: {count} jars\n")
        report(f"fetched {count} jars in {time.monotonic() - started:.1f} s")
        return target
