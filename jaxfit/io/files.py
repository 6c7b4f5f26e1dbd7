"""Atomic file writing: a file is either its old self or wholly the new one, never half written.

Every write goes to a unique temporary name in the target's own directory (``.<name>.<pid>.<random>.tmp``,
so two writers of the same file never share a temporary), is flushed and fsynced, renamed onto the
final name with ``os.replace`` (atomic on POSIX), and the directory is fsynced so the rename itself
survives a power cut. On any failure (a full disk, no permission, a read-only file system, an error
in the caller's writer) the temporary is removed and :class:`OutputError` is raised, with a one-line
message naming the file and the reason.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, IO

from ..errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)


class OutputError(UserError):
    """A result or checkpoint file could not be written (one line: the file and the reason)."""


@dataclass(frozen=True)
class Written:
    """What landed on disk: the final path, its size in bytes and its sha256 (hex)."""

    path: str
    size: int
    sha256: str


def reason(e: BaseException) -> str:
    """A short lower-case reason for an error: "no space left on device", "permission denied"..."""
    if isinstance(e, OSError) and e.errno is not None:
        return os.strerror(e.errno).lower()
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())


def fsync_dir(path: str) -> None:
    """fsync a directory (so a rename or create in it is durable); a no-op where unsupported."""
    try:
        fd = os.open(path or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of a file."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def atomic_write(path: str | os.PathLike, write_fn: Callable[[IO[bytes]], Any]) -> Written:
    """Write `path` atomically: `write_fn(f)` writes into a binary file object (seekable) open on a
    unique temporary in the same directory, which then replaces `path`. Returns the size and sha256
    of the bytes that were written. Raises OutputError (temporary removed) on any failure."""
    path = os.fspath(path)
    d, base = os.path.split(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.{os.getpid()}.", suffix=".tmp", dir=d)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {reason(e)}") from e
    try:
        try:
            os.fchmod(fd, 0o666 & ~_UMASK)  # what open() would have given, not mkstemp's 0600
        except OSError:
            pass
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        size, digest = sha256_file(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, Exception):
            raise OutputError(_one_line(f"cannot write {path}: {reason(e)}")) from e
        raise  # KeyboardInterrupt, SystemExit: temporary gone, the interruption goes on
    fsync_dir(d)
    return Written(path, size, digest)


def write_bytes(path: str | os.PathLike, data: bytes) -> Written:
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: str | os.PathLike, text: str) -> Written:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, **kw) -> Written:
    kw.setdefault("indent", 1)
    return write_text(path, json.dumps(obj, **kw) + "\n")


def write_npz(path: str | os.PathLike, arrays: dict, compressed: bool = False) -> Written:
    import numpy as np

    save = np.savez_compressed if compressed else np.savez
    return atomic_write(path, lambda f: save(f, **arrays))


def write_parquet(path: str | os.PathLike, frame) -> Written:
    return atomic_write(path, lambda f: frame.to_parquet(f))


def write_csv(path: str | os.PathLike, frame, **kw) -> Written:
    def w(f):
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        frame.to_csv(text, **kw)
        text.flush()
        text.detach()  # leave f open for atomic_write's flush and fsync

    return atomic_write(path, w)


def remove_stale_temporaries(directory: str | os.PathLike) -> list[str]:
    """Remove the temporaries (``.<name>.<pid>.<random>.tmp``) that writers killed mid-write left in
    `directory`: those whose pid no longer exists on this host. The names removed."""
    directory = os.fspath(directory)
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        parts = name[:-len(".tmp")].rsplit(".", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # alive (or not ours to judge): its writer may still be at work
        except ProcessLookupError:
            pass
        except OSError:
            continue
        try:
            os.unlink(os.path.join(directory, name))
            removed.append(name)
        except OSError:
            pass
    return removed


def check_writable(directory: str | os.PathLike) -> str:
    """Create `directory` if needed and prove a file can be written, synced and removed there
    (call it before training starts, so a bad --out fails in a second, not after the sweep)."""
    directory = os.fspath(directory)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output directory {directory}: {reason(e)}") from e
    if not os.path.isdir(directory):
        raise OutputError(f"cannot write to {directory}: {os.strerror(errno.ENOTDIR).lower()}")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".jaxfit-probe.{os.getpid()}.", suffix=".tmp", dir=directory)
        with os.fdopen(fd, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise OutputError(f"cannot write to {directory}: {reason(e)}") from e
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return directory
