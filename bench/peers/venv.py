"""The peers' virtualenv: ``<state_dir>/bench/peers-venv`` with bench/peers/requirements.txt, made once.

The peer frameworks pin their own Kafka clients (confluent-kafka, rocksdict, orjson, ...), so they live apart
from the project's virtualenv. The venv is built with the interpreter running the bench (the same Python as
the project's measurements) and reused while a stamp file holds the hash of the requirements and that
Python's version; anything else rebuilds it from scratch. A failed build raises ``PeerVenvError`` with pip's
last lines, so the peer rows are reported as failed with the reason and the bench run goes on.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"
STAMP = ".requirements.sha256"
PIP_TIMEOUT_S = 1200.0


class PeerVenvError(RuntimeError):
    """The peers' virtualenv could not be created or installed."""


def requirements_hash(requirements: Path = REQUIREMENTS) -> str:
    """What the venv was built from: the requirements file and the interpreter's version."""
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_peers_venv(bench_dir: Path, report: Callable[[str], None], log: Path) -> Path:
    """The peers venv's python, building the venv first when it is missing or stale (progress to ``report``)."""
    venv = bench_dir / "peers-venv"
    wanted = requirements_hash()
    stamp = venv / STAMP
    if venv_python(venv).is_file() and stamp.is_file() and stamp.read_text().strip() == wanted:
        report(f"peers venv {venv}: up to date, reused")
        return venv_python(venv)
    if venv.exists():
        report(f"peers venv {venv}: stale or incomplete, rebuilding")
        shutil.rmtree(venv)
    started = time.monotonic()
    report(f"peers venv {venv}: creating (pip log: {log})")
    log.parent.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "venv", str(venv)], log, "python -m venv")
    python = str(venv_python(venv))
    _run([python, "-m", "pip", "install", "--upgrade", "pip"], log, "pip install --upgrade pip")
    pins = ", ".join(line.strip() for line in REQUIREMENTS.read_text().splitlines() if _is_pin(line))
    report(f"peers venv: installing {pins} (a few minutes on the first run)")
    _run([python, "-m", "pip", "install", "-r", str(REQUIREMENTS)], log, "pip install -r requirements.txt")
    stamp.write_text(wanted + "\n")
    report(f"peers venv ready in {time.monotonic() - started:.0f} s")
    return venv_python(venv)


def _is_pin(line: str) -> bool:
    return bool(line.strip()) and not line.lstrip().startswith("#")


def _run(cmd: list[str], log: Path, what: str) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        try:
            done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=PIP_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PeerVenvError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        tail = " | ".join(line for line in log.read_text(errors="replace").splitlines()[-4:] if line.strip())
        raise PeerVenvError(f"{what} exited with {done.returncode}: {tail}")
