"""Process plumbing for the broker: detached spawn, pid files, liveness by command line, ports, stop."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

# Popen objects of brokers started by *this* Python process. Kept so the child is reaped when it exits
# (no zombie that still looks alive to kill(pid, 0)) and so Popen does not warn "still running" on GC.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def read_pid(pid_file: Path) -> int | None:
    """The pid recorded in ``pid_file``, or None when the file is missing or garbage."""
    try:
        text = pid_file.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _reap(pid: int) -> None:
    # Only our own registered brokers: waitpid() on any other child would steal its exit status from
    # whoever owns it. Other zombies are still reported dead by process_argv (empty cmdline).
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]


def process_argv(pid: int) -> list[str] | None:
    """Command line of a live process; None when it does not exist or is a zombie (exited, unreaped).

    ``[]`` means alive but no command line yet: a process caught mid-exec (just spawned) has none.
    """
    _reap(pid)
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self").exists():
        try:
            stat = (proc / "stat").read_text()
            raw = (proc / "cmdline").read_bytes()
        except OSError:  # gone (ENOENT/ESRCH) or not ours to read
            return None
        # The state letter follows the parenthesised command name, which may itself contain ") ".
        if stat[stat.rindex(")") + 2 :].startswith(("Z", "X")):
            return None
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    # No procfs (macOS): ask ps. Arguments containing spaces get split, which is fine for our match.
    done = subprocess.run(["ps", "-o", "stat=,args=", "-p", str(pid)], capture_output=True, text=True, check=False)
    fields = done.stdout.split()
    if not fields or fields[0].startswith("Z"):
        return None
    return fields[1:]


def find_pids(needle: str) -> list[int]:
    """Pids of live processes with ``needle`` as one argument (Linux /proc only; [] elsewhere).

    Used to find our broker when its pid file was lost, so it is never orphaned on a port.
    """
    proc = Path("/proc")
    if not (proc / "self").exists():
        return []
    found = []
    for entry in proc.iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            argv = process_argv(int(entry.name))
            if argv is not None and needle in argv:
                found.append(int(entry.name))
    return sorted(found)


def port_in_use(host: str, port: int) -> bool:
    """True when something holds ``host:port`` so a server could not bind it.

    SO_REUSEADDR mirrors what the JVM does, so sockets in TIME_WAIT left by a just-stopped broker
    do not count as "in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def spawn_detached(argv: list[str], log_file: Path, cwd: Path) -> int:
    """Start ``argv`` in its own session (Ctrl-C in the caller's terminal does not reach it).

    stdout and stderr go to ``log_file``; the previous log is kept as ``<log_file>.1``. Returns the pid.
    """
    if log_file.exists():
        log_file.replace(log_file.with_name(log_file.name + ".1"))
    with open(log_file, "ab") as out:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[child.pid] = child
    return child.pid


def terminate(pid: int, timeout_s: float = 30.0) -> bool:
    """SIGTERM ``pid`` (a clean Kafka shutdown), wait up to ``timeout_s``, then SIGKILL.

    Returns True when the process is gone afterwards. A pid that does not exist counts as gone.
    """
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        _reap(pid)
        return True
    if _wait_gone(pid, timeout_s):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return _wait_gone(pid, 10.0)


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process_argv(pid) is None:
            return True
        time.sleep(0.1)
    return process_argv(pid) is None


def tail(path: Path, lines: int = 20) -> str:
    """Last ``lines`` lines of a text file ("" when it does not exist); reads only the file's end."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
