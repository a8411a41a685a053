"""Writing files without following symbolic links, so a planted link never redirects a write.

hvae writes its run directories, checkpoints and samples through these functions: a folder is
created or checked one level at a time and refused when it is a link; a file is opened with
``O_NOFOLLOW`` (and refused when it is a link, a folder, a FIFO or a device, or has other hard
links), or written to a fresh temporary name and renamed over the target, which replaces a link
instead of writing into what it points to.

What hvae creates gets the mode the umask gives a new file (0666) or folder (0777), as other tools'
files do: a temporary that ``tempfile`` made owner-only is given it (:func:`shared_mode`) before it
takes its name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import stat
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence

from hvae.errors import OutputExistsError, UnsafePathError

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # 0 on Windows, which has no symbolic links in the POSIX sense
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a FIFO must not wait for a writer


def shared_mode(folder: bool = False) -> int:
    """The mode ``open`` (0o666) or ``mkdir`` (0o777, with ``folder``) gives a new file or folder under the
    process's umask: what hvae's temporaries, which ``tempfile`` makes owner-only, are given before they take
    their names."""
    mask = os.umask(0o077)  # the only way to read it; a file another thread creates meanwhile is owner-only
    os.umask(mask)
    return (0o777 if folder else 0o666) & ~mask


def ensure_dir(path: str | os.PathLike) -> Path:
    """``path`` as a folder: created if missing (its parent must exist), refused if it is a link or a file."""
    path = Path(path)
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePathError(f"{path} is a symbolic link: hvae writes only inside the run's own folders, "
                              f"never through a link. Remove the link or choose another folder.")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePathError(f"{path} is in the way: hvae needs a folder there, and will not replace the file.")
    return path


def open_regular(path: str | os.PathLike, flags: int, mode: int = 0o666) -> int:
    """``os.open`` without following a link, refusing anything but a plain file with one link."""
    try:
        fd = os.open(path, flags | NOFOLLOW | CLOEXEC | NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(f"{os.fspath(path)} is a symbolic link: hvae does not write through links. "
                                  f"Remove it.") from None
        if exc.errno in (errno.EISDIR, errno.ENXIO):
            raise UnsafePathError(f"{os.fspath(path)} is not a plain file: remove it.") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        what = "has other hard links" if stat.S_ISREG(info.st_mode) else "is not a plain file"
        raise UnsafePathError(f"{os.fspath(path)} {what}: hvae will not write to it. Remove it.")
    if NONBLOCK:
        os.set_blocking(fd, True)
    return fd


def write_atomic(path: str | os.PathLike, data: bytes | Callable[[BinaryIO], object]) -> None:
    """Write ``data`` to ``path`` via a new temporary file, fsync and rename: never a half file, and never
    through a link (a link at ``path`` is replaced, its target untouched). ``data`` may also be a function
    that writes to the open file (``np.savez``), for files too large to hold twice."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.unlink(missing_ok=True)  # a leftover of a killed process with this pid (a link: the link goes)
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | CLOEXEC, 0o666)
        with os.fdopen(fd, "wb") as f:
            data(f) if callable(data) else f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as exc:  # disk full, name too long, ...: say which file (not its temporary name)
        raise OSError(exc.errno, exc.strerror or str(exc), os.fspath(path)) from None
    finally:
        temporary.unlink(missing_ok=True)


def remove_leftovers(folder: str | os.PathLike, names: Sequence[str]) -> None:
    """Remove the temporary files :func:`write_atomic` leaves in ``folder`` for ``names`` when the process
    writing them is killed (``.NAME.tmp-PID``)."""
    for name in names:
        for leftover in Path(folder).glob(f".{name}.tmp-*"):
            leftover.unlink(missing_ok=True)


NAME_LIMIT = 100  # characters of a name hvae puts into a file name (sample files add about 40)


def is_plain_name(value: object) -> bool:
    """Whether ``value`` can be used as (part of) a file name as it is: a short string with no folder
    separator, no NUL or other control character, and not ``.`` or ``..``."""
    return (isinstance(value, str) and 0 < len(value) <= NAME_LIMIT and value not in (".", "..")
            and not any(c in "/\\" or ord(c) < 32 or ord(c) == 127 for c in value))


def refuse_links(*paths: str | os.PathLike) -> None:
    """Raise :class:`UnsafePathError` for the first of ``paths`` that is a symbolic link (checked before
    any work, so a run that would be refused later is refused at once)."""
    for path in paths:
        if os.path.islink(path):
            raise UnsafePathError(f"{os.fspath(path)} is a symbolic link: hvae writes only inside the run's own "
                                  f"folders, never through a link. Remove the link or choose another folder.")


def read_plain_file(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of the plain file at ``path``, at most ``limit`` of them. A FIFO or a device (which would
    block or never end) is not opened; either, and a larger file, raise OSError naming the path."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise OSError(errno.EINVAL, "not a plain file", os.fspath(path))
    if info.st_size > limit:
        raise OSError(errno.EFBIG, f"{info.st_size:,} bytes, more than the {limit:,} expected", os.fspath(path))
    with open(path, "rb") as f:
        return f.read(limit + 1)[:limit]


def check_output_folder(out: Path, *, kind: str, unlike: Callable[[Path], str | None], overwrite: bool = False,
                        sources: Sequence[str | os.PathLike] = (), argument: str = "out") -> bool:
    """Whether writing the output folder ``out`` replaces an earlier one; :class:`OutputExistsError` where
    it may not be written.

    ``out`` may be absent or an empty folder. With ``overwrite`` it may also be an earlier output of this
    ``kind`` ("a magenta.js checkpoint folder"): ``unlike(out)`` is None for one, else what makes it
    different ("it holds notes.txt"). Never a file or link, the working directory or a folder above it, nor
    a folder holding one of ``sources`` (which would go with it). ``argument`` is the Python parameter that
    names ``out``, for the message.
    """
    if not os.path.lexists(out) or (out.is_dir() and not out.is_symlink() and not any(out.iterdir())):
        return False
    if out.is_symlink() or not out.is_dir():
        raise OutputExistsError(out, f"{out} exists and is not a folder", argument=argument)
    difference = unlike(out)
    if difference is not None:
        refused = f", so it is not replaced ({difference})" if overwrite else ""
        raise OutputExistsError(out, f"{out} exists and is not {kind}{refused}", argument=argument)
    if not overwrite:
        raise OutputExistsError(out, f"{out} exists and holds {kind}", replaceable=True, argument=argument)
    for inner in (Path.cwd(), *map(Path, sources)):
        if inner.resolve().is_relative_to(out.resolve()):
            raise OutputExistsError(out, f"{out} holds {inner.resolve()}, which would go with it", argument=argument)
    return True


def check_output_file(path: Path, *, overwrite: bool = False, argument: str = "output") -> None:
    """:class:`OutputExistsError` where the file ``path`` may not be written: a link or anything but a plain
    file, always (hvae never writes through a link); a plain file unless ``overwrite``. Checked before the
    work that makes the file; :func:`write_atomic` then writes it."""
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not path.is_file():
        raise OutputExistsError(path, f"{path} exists and is not a plain file (hvae never writes through a link)",
                                argument=argument)
    if not overwrite:
        raise OutputExistsError(path, f"{path} exists", replaceable=True, argument=argument)


def foreign_entries(folder: Path, expected: Callable[[str], bool]) -> str | None:
    """None when every entry of ``folder`` is ``expected`` by name; else the first few others, as
    :func:`check_output_folder`'s ``unlike`` says them ("it holds notes.txt, todo")."""
    foreign = sorted(p.name for p in folder.iterdir() if not expected(p.name))
    return f"it holds {', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}" if foreign else None


@contextlib.contextmanager
def atomic_directory(target: Path, replace: bool = False) -> Iterator[Path]:
    """A temporary folder beside ``target`` to fill; renamed to ``target`` (absent or an empty folder)
    when the block ends, removed if it raises: ``target`` appears whole or not at all.

    With ``replace``, a ``target`` that holds files (checked by :func:`check_output_folder`) is renamed
    aside once the new folder is whole, the new one renamed in, and the old one removed: until then it
    is untouched, and a failure puts it back.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        os.chmod(building, shared_mode(folder=True))
        yield building
        if replace and target.is_dir() and any(target.iterdir()):
            _swap_in(building, target)
            return
        if target.exists():
            target.rmdir()
        os.replace(building, target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


def _swap_in(new: Path, target: Path) -> None:
    """Put the folder ``new`` in the place of the folder ``target`` and remove the old one."""
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old)


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Inside the block, SIGTERM (``kill``'s default) raises SystemExit(143), so the block's clean-up runs as it
    does on Ctrl-C (an import's unpacked archive and half-written run go; a sampler says what it kept). Only in
    the main thread, and only where SIGTERM has its default action (a program with its own handler keeps it)."""
    ours = threading.current_thread() is threading.main_thread() and \
        signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    if ours:
        signal.signal(signal.SIGTERM, _exit_for_signal)
    try:
        yield
    finally:
        if ours:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _exit_for_signal(number: int, frame: object) -> None:
    raise SystemExit(128 + number)
