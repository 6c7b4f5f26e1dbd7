"""One writer per output directory.

    with DirLock(out):      # raises LockedError if another live process holds `out`
        ...train, save...

The lock is the file ``<dir>/.jaxfit.lock``, created atomically (``O_CREAT | O_EXCL``) and holding
JSON ``{"pid", "host", "started", "token"}``. A lock left by a process that died on this host (its pid
no longer exists) is stale and is taken over; takeovers are serialised by a kernel lock (``flock``) on
``<dir>/.jaxfit.lock.guard``, which the kernel releases when its holder dies, and the new lock is again
created with ``O_EXCL``, so of several processes racing for a stale lock exactly one wins. A lock held
from another host cannot be checked and is always respected. The lock is removed on exit, and only
if it is still ours.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import socket
import time

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

from ..errors import UserError
from .files import OutputError, fsync_dir, reason

LOCK_NAME = ".jaxfit.lock"
# A lock file that cannot be parsed was either caught between its O_EXCL create and its write, or left
# by a writer that died right there: respected while younger than this, stale after.
UNREADABLE_GRACE_S = 30.0


class LockedError(UserError):
    """The output directory is being written by another live process."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


class DirLock:
    def __init__(self, path: str | os.PathLike):
        self.dir = os.fspath(path)
        self.file = os.path.join(self.dir, LOCK_NAME)
        self.held = False
        self.taken_over: dict | None = None  # the stale holder's record, when we took its lock over
        self._token = None

    # ------------------------------------------------------------------ reading
    def _read(self) -> dict | None:
        """The current lock's record; None if there is no lock; {} if it cannot be parsed."""
        try:
            with open(self.file, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            rec = json.loads(raw.decode("utf-8"))
            return rec if isinstance(rec, dict) and isinstance(rec.get("pid"), int) else {}
        except (UnicodeDecodeError, ValueError):
            return {}

    def _stale(self, rec: dict) -> bool:
        if not rec:
            try:
                age = time.time() - os.stat(self.file).st_mtime
            except FileNotFoundError:
                return False
            return age > UNREADABLE_GRACE_S
        return rec.get("host") == socket.gethostname() and not _pid_alive(rec["pid"])

    def _refuse(self, rec: dict) -> LockedError:
        if not rec:
            return LockedError(f"{self.dir} is being written by another process (its lock {self.file} is being "
                               "created or cannot be read): wait for it, or choose another --out")
        return LockedError(f"{self.dir} is being written by pid {rec['pid']} on host {rec.get('host', '?')} since "
                           f"{rec.get('started', '?')}: wait for it, or choose another --out")

    # ------------------------------------------------------------------ taking
    def _create(self) -> bool:
        """Try to create the lock file with O_EXCL; True if it is now ours."""
        token = secrets.token_hex(8)
        rec = {"pid": os.getpid(), "host": socket.gethostname(),
               "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "token": token}
        try:
            fd = os.open(self.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as e:
            raise OutputError(f"cannot lock {self.dir}: {reason(e)}") from e
        try:
            os.write(fd, json.dumps(rec).encode())
            os.fsync(fd)
        except OSError as e:
            os.close(fd)
            try:
                os.unlink(self.file)
            except OSError:
                pass
            raise OutputError(f"cannot lock {self.dir}: {reason(e)}") from e
        os.close(fd)
        fsync_dir(self.dir)
        self._token = token
        self.held = True
        return True

    def acquire(self) -> "DirLock":
        if self.held:
            raise RuntimeError(f"DirLock({self.dir!r}) is already held by this object")
        try:
            os.makedirs(self.dir, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create output directory {self.dir}: {reason(e)}") from e
        for _ in range(100):
            if self._create():
                return self
            rec = self._read()
            if rec is None:
                continue  # released between our create and our read: try again
            if not self._stale(rec):
                raise self._refuse(rec)
            if self._take_over(rec):
                return self
        raise self._refuse(self._read() or {})  # pragma: no cover - a lock that keeps changing hands

    def _take_over(self, seen: dict) -> bool:
        """Replace the stale lock `seen`, serialised against every other taker. True if ours now;
        False to look again (someone else changed it first)."""
        guard_path = self.file + ".guard"
        try:
            gfd = os.open(guard_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OutputError(f"cannot lock {self.dir}: {reason(e)}") from e
        try:
            if fcntl is not None:
                fcntl.flock(gfd, fcntl.LOCK_EX)  # held for microseconds; released by the kernel on death
            rec = self._read()
            if rec is None:
                return self._create()
            if rec != seen or not self._stale(rec):
                return False  # another taker won; the caller looks again (and is refused)
            try:
                os.unlink(self.file)
            except FileNotFoundError:
                pass
            if self._create():  # O_EXCL: a plain creator that slipped in after the unlink wins instead
                self.taken_over = seen
                return True
            return False
        finally:
            os.close(gfd)  # releases the flock

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        rec = self._read()
        if rec and rec.get("token") == self._token and rec.get("pid") == os.getpid():
            try:
                os.unlink(self.file)
            except FileNotFoundError:
                pass
            fsync_dir(self.dir)

    def __enter__(self) -> "DirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"DirLock({self.dir!r}, held={self.held})"
