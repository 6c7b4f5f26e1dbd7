"""Bytes to disk and back, knowing nothing of training: atomic writes with their sha256
(`files`), one writer per directory (`lock`), params pytrees as flat path -> array dicts (`tree`)."""

from .files import OutputError, atomic_write, check_writable, write_bytes, write_json, write_text
from .lock import LOCK_NAME, DirLock, LockedError
from .tree import flatten, unflatten

__all__ = ["LOCK_NAME", "DirLock", "LockedError", "OutputError", "atomic_write", "check_writable", "flatten",
           "unflatten", "write_bytes", "write_json", "write_text"]
