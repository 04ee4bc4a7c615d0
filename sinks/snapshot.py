"""Read-only snapshots of the live warehouse, published by the sink and opened by every reader.

DuckDB allows one read-write process *or* many read-only ones on a file, never both: a reader that opens the
sink's live file gets a lock error. So the sink publishes a copy and readers only ever open the copy.

Publishing (``publish_snapshot``), by the sink's writer (its own process) between two batches:

1. ``CHECKPOINT``: every committed transaction is moved from the WAL into the main file, so the main file
   alone is a complete, consistent database (no batch is half in it: the writer writes nothing meanwhile).
2. Copy the main file to a temporary name in the snapshot's directory: a reflink clone where the file system
   supports it (O(1) on XFS/Btrfs), else an in-kernel copy (``copy_file_range``/``sendfile``).
3. ``fsync`` the copy, delete any stale ``<snapshot>.wal`` (a reader would otherwise replay it), then
   ``os.replace`` it over the snapshot and ``fsync`` the directory: the path points at the old file or the
   new one, never at a partial one, even across a power cut.

The alternative ``ATTACH tmp; COPY FROM DATABASE`` (``method="attach"``) rewrites every row and rebuilds the
key indexes, where the file copy moves bytes only (a reflink clone moves none), so the copy is the default
(``bench/sink_throughput.py`` prints the time of one publish).

**Storage format readers can open.** A file written by DuckDB 2.0 in its default format (storage version 69)
cannot be opened by any DuckDB before 2.0, and the readers marketing uses (the DuckDB CLI on PyPI, DuckDB.NET,
JDBC drivers bundled in BI tools) lag the Python client. So every snapshot is written in the storage format of
``STORAGE_VERSION`` (``v1.0.0``: storage version 64, readable by every DuckDB since 1.0 and by 2.0). When the live
file already uses that format or an older one, the byte copy above is that format; when it uses a newer one
(a file DuckDB 2.0 created without a compatibility setting), a byte copy would be unreadable, so the snapshot
is written through ``ATTACH … (STORAGE_VERSION …)`` + ``COPY FROM DATABASE`` instead (about 1 s per million
rows here). Creating the live file with ``config={"storage_compatibility_version": STORAGE_VERSION}`` keeps
the fast byte copy.

A reader that has the old snapshot open keeps reading that file (POSIX keeps an unlinked inode alive) and
sees the new one on its next open. Read-only opens take only shared locks and the sink never opens the
snapshot, so readers get no lock errors. Not guaranteed: freshness. A snapshot is as old as its last
publication (``_sink_meta.snapshot_published_at``); the sink exports how far behind the live file it may be.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

from sinks.duckdb_schema import META

#: Oldest DuckDB release whose readers must open a snapshot (see the module docstring).
STORAGE_VERSION = "v1.0.0"

_FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
_NO_REFLINK = {errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.ENOSYS, errno.EBADF}


class NoSnapshotError(FileNotFoundError):
    """No snapshot has been published at that path yet."""


@dataclass(frozen=True)
class SnapshotInfo:
    """A published snapshot: where, how many bytes, and how it was copied (``reflink`` / ``copy`` / ``attach``)."""

    path: Path
    bytes: int
    how: str


def temp_path(snapshot: Path) -> Path:
    """The temporary name a snapshot is built under (same directory: ``os.replace`` must not cross devices)."""
    return snapshot.with_name(f".{snapshot.name}.tmp")


def publish_snapshot(
    con: duckdb.DuckDBPyConnection,
    db_path: Path,
    snapshot: Path,
    method: str = "copy",
    durable: bool = True,
    storage_version: str = STORAGE_VERSION,
) -> SnapshotInfo:
    """Publish the committed state of ``con`` (the live database at ``db_path``) at ``snapshot`` atomically,
    in a storage format DuckDB ``storage_version`` and later can read.

    Must run on the connection's own thread with no transaction open. Raises DuckDB or OS errors unchanged
    (the caller decides about retrying); the previous snapshot stays in place when it fails.
    """
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(snapshot)
    _remove(tmp)
    _remove(Path(f"{tmp}.wal"))
    if method == "copy" and not readable_by(storage_of(con), storage_version):
        method = "attach"
    if method == "attach":
        con.execute(f"ATTACH '{_sql_str(tmp)}' AS _snapshot (STORAGE_VERSION '{_sql_str(storage_version)}')")
        try:
            con.execute(f"COPY FROM DATABASE {_current_db(con)} TO _snapshot")
            con.execute("CHECKPOINT _snapshot")
        finally:
            con.execute("DETACH _snapshot")
        how = "attach"
    elif method == "copy":
        con.execute("CHECKPOINT")
        how = _clone_or_copy(db_path, tmp)
    else:
        raise ValueError(f"unknown snapshot method {method!r} (copy or attach)")
    if durable:
        _fsync(tmp)
    _remove(Path(f"{snapshot}.wal"))
    os.replace(tmp, snapshot)
    if durable:
        _fsync_dir(snapshot.parent)
    return SnapshotInfo(snapshot, snapshot.stat().st_size, how)


def storage_of(con: duckdb.DuckDBPyConnection, database: str | None = None) -> str:
    """The storage format of ``database`` (default: the current one) as the DuckDB release that introduced it,
    e.g. ``v1.0.0``; DuckDB tags each attached database with it."""
    row = con.execute(
        "SELECT tags['storage_version'] FROM duckdb_databases() WHERE database_name = coalesce(?, current_database())",
        [database],
    ).fetchone()
    if row is None or not row[0]:
        raise ValueError(f"DuckDB reports no storage version for database {database or '(current)'}")
    return str(row[0]).rstrip("+")


def readable_by(storage: str, release: str) -> bool:
    """Whether DuckDB ``release`` (and every later one) reads files in the storage format of ``storage``."""
    return _release(storage) <= _release(release)


def _release(version: str) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", version)
    if not numbers:
        raise ValueError(f"not a DuckDB release: {version!r}")
    return tuple(int(n) for n in numbers[:3])


def open_snapshot(snapshot: Path) -> duckdb.DuckDBPyConnection:
    """Open a published snapshot read-only; :class:`NoSnapshotError` when there is none yet."""
    if not snapshot.is_file():
        raise NoSnapshotError(f"no warehouse snapshot at {snapshot} yet")
    return duckdb.connect(str(snapshot), read_only=True)


def published_at_ms(con: duckdb.DuckDBPyConnection) -> int | None:
    """When the open snapshot was published (epoch ms), from its ``_sink_meta``; None if unknown."""
    try:
        row = con.execute(f"SELECT value FROM {META} WHERE key = 'snapshot_published_at'").fetchone()
    except duckdb.CatalogException:
        return None
    return int(row[0]) if row and row[0] is not None else None


def remove_leftovers(snapshot: Path) -> None:
    """Delete a temporary copy a killed sink left behind (it was never visible to readers)."""
    tmp = temp_path(snapshot)
    _remove(tmp)
    _remove(Path(f"{tmp}.wal"))


def _clone_or_copy(src: Path, dst: Path) -> str:
    with src.open("rb") as fin, dst.open("wb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
            return "reflink"
        except OSError as error:
            if error.errno not in _NO_REFLINK:
                raise
    shutil.copyfile(src, dst)  # uses copy_file_range/sendfile on Linux: no copy through Python
    return "copy"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems refuse fsync on directories; the data is synced
        _fsync(path)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _current_db(con: duckdb.DuckDBPyConnection) -> str:
    row = con.execute("SELECT current_database()").fetchone()
    assert row is not None
    return '"' + str(row[0]).replace('"', '""') + '"'


def _sql_str(path: Path | str) -> str:
    return str(path).replace("'", "''")
