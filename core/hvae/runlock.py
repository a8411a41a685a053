"""One run at a time in a run directory.

A training run holds an exclusive lock on its run directory's lock file (``<run>/.lock``, named by
:class:`hvae.rundir.RunDir`) from the moment it claims the directory
until it stops. A second run on the same directory (``hvae train --out`` or ``--resume``) is
refused with the holder's process id, host and start time instead of interleaving checkpoints and
metrics. The operating system drops the lock when the holder dies, even by SIGKILL, so there is
never a stale lock to clean up; the file itself stays (removing it would race with a new holder).
The lock file is opened without following links (:func:`hvae.safefiles.open_regular`): a ``.lock``
that is a link, a folder or a FIFO is refused with one line, and nothing it points to is touched.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
from pathlib import Path

from hvae.errors import HvaeError
from hvae.safefiles import open_regular

try:  # POSIX
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


class RunInUseError(HvaeError):
    """Another process is training in the run directory."""


class RunLock:
    """The exclusive claim of one process on a run directory, through its lock file ``path`` (see the
    module's docstring).

    ``acquire`` creates the directory if needed; ``release`` (or leaving a ``with`` block) gives
    the claim up. Holding it twice in one process is harmless: ``acquire`` on a held lock does nothing.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.run_dir = self.path.parent
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        if self._fd is not None:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = open_regular(self.path, os.O_RDWR | os.O_CREAT)
        if not _try_lock(fd):
            holder = _describe_holder(fd)
            os.close(fd)
            raise RunInUseError(f"{self.run_dir} is in use by another hvae run ({holder}). Wait for it to "
                                f"finish or stop it (Ctrl-C keeps its progress), or choose another --out.")
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": datetime.datetime.now().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(holder) + "\n").encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # at interpreter exit the modules it needs may be gone; the OS frees the lock
            pass


def _describe_holder(fd: int) -> str:
    """``pid N on HOST since TIME`` from the lock file, as far as it can be read."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        holder = json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        holder = {}
    if not isinstance(holder, dict) or "pid" not in holder:
        return "its process is still running"
    return f"pid {holder['pid']} on {holder.get('host', '?')} since {holder.get('since', '?')}"
