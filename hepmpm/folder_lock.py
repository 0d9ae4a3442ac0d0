"""One run per output folder: a command holds its ``--out`` folder for as long as it writes there.

The hold is an exclusive ``flock`` on ``OUT/.hepmpm.lock``, taken before the command looks at
what the folder holds, so "is it empty? then it is mine" is one step: of two runs released
together into one folder, exactly one proceeds and the other gets a one-line error naming the
run that holds it. The kernel releases the lock when its process dies (``kill -9`` included),
so a killed run never leaves a stale claim; the lock file is removed when the run ends.
Works on local file systems and on NFS v4 (which maps ``flock`` to byte-range locks).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from hepmpm.errors import HepmpmError

LOCK_NAME = ".hepmpm.lock"


def folder_is_empty(folder: Path) -> bool:
    """True when ``folder`` is absent or holds nothing but a run's lock file."""
    folder = Path(folder)
    return not folder.is_dir() or all(p.name == LOCK_NAME for p in folder.iterdir())


def make_folder(folder: Path, flag: str = "--out") -> bool:
    """Create ``folder`` (and its parents); True when it did not exist. A one-line error names
    the path and the cause when it cannot be a folder (a file, a read-only place)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise HepmpmError(f"{flag} {folder} is a file, not a folder; choose another {flag}")
    existed = folder.is_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise HepmpmError(f"{flag} {folder}: cannot create the folder ({err.strerror})") from None
    return not existed


def _holder(lock: Path) -> str:
    try:
        return lock.read_text().strip() or "a run that is starting"
    except OSError:
        return "another run"


@contextlib.contextmanager
def holding_folder(folder: Path, what: str, enabled: bool = True) -> Iterator[Path]:
    """Hold ``folder`` (created if needed) for one ``what`` run (e.g. ``pre-training``).

    Refused in one line while another live process holds it. On exit the lock file goes, and
    a folder this run created and left empty goes too (a refused or failed run leaves no
    trace). ``enabled=False`` (the non-zero ranks of a distributed run, which write where rank 0
    claimed) makes it a no-op."""
    folder = Path(folder)
    if not enabled:
        yield folder
        return
    created = make_folder(folder)
    lock = folder / LOCK_NAME
    try:
        fd = _acquire(lock, folder, what)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    try:
        stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.write(fd, f"{what}, pid {os.getpid()} on {socket.gethostname()} since {stamp}".encode())
        yield folder
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)  # releases the lock
        if created and folder_is_empty(folder):
            with contextlib.suppress(OSError):
                folder.rmdir()


def _acquire(lock: Path, folder: Path, what: str) -> int:
    """An open descriptor of ``lock`` holding its exclusive lock."""
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise HepmpmError(
                f"--out {folder}: cannot write there ({err.strerror}); choose another --out"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise HepmpmError(
                f"{folder} is being written by another hepmpm run ({_holder(lock)}); wait "
                f"for it to end or choose another --out for this {what} run"
            ) from None
        # The holder may have ended and removed the file between our open and our lock: then
        # we hold a lock on a file nobody else sees, so open the path again.
        try:
            if lock.stat().st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
