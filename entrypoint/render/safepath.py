"""Open a folder (or read a file) by walking its path one component at a time, safely.

The entrypoint runs as root and writes into folders the app (another user) may be able
to write. A path resolved by the kernel follows every symbolic link on it, so an app that
swaps a folder of a destination's path for a link makes root write wherever it points.

:func:`open_folder` walks from ``/`` with ``openat(O_DIRECTORY | O_NOFOLLOW)``, holding a
descriptor at each step, so nothing swapped in after a step is looked at again. A link
on the way is followed only when the folder holding it can be written by nobody but
root (or the entrypoint's own user), or is on a read-only mount: only they could have
planted it (``/var/run -> /run`` is such a link, and ``..data`` in a ConfigMap volume).
A link in a folder others can write (``/tmp``, a folder owned by the app) is refused.
Missing folders are created ``0750`` whatever the umask.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections import deque
from collections.abc import Callable
from pathlib import Path

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FOLDER_MODE = 0o750
MAX_LINKS = 40  # as the kernel's own limit on links followed in one lookup


class UnsafePath(OSError):
    """A component of the path cannot be used safely (a link others could plant, or
    not a folder). ``strerror`` says which and why."""


def reason(exc: OSError) -> str:
    from entrypoint.describe import os_reason

    return exc.strerror or os_reason(exc)


def trusted(st: os.stat_result, *, sticky: bool = False) -> bool:
    """Only root or the entrypoint's user can change this file, or what this folder holds:
    it belongs to one of them and neither its group nor others may write it. With
    ``sticky``, a folder with the sticky bit (``/tmp``) counts too: others may add names
    there, but cannot rename or remove those of root or the entrypoint's user."""
    if st.st_uid not in (0, os.geteuid()):
        return False
    if sticky and stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX:
        return True
    return not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def read_only(fd: int) -> bool:
    """``fd`` is on a read-only mount (an image run with ``--read-only``, a Kubernetes
    ConfigMap volume): only root, by remounting, could change what it holds."""
    return bool(os.fstatvfs(fd).f_flag & os.ST_RDONLY)


def may_follow(folder: int) -> bool:
    """A link in this folder can only have been planted by root or the entrypoint's user."""
    return trusted(os.fstat(folder)) or read_only(folder)


# Called with each folder a walk reaches (a descriptor and its real path, links
# resolved) and, by read_file, with the file it opened; raises UnsafePath to refuse it.
Check = Callable[[int, Path], None]


def open_folder(folder: Path, *, create: bool = False, group: int = -1,
                check: Check | None = None) -> int:
    """A descriptor of ``folder`` reached without following an untrusted link.

    With ``create``, missing folders are made ``0750`` (group ``group`` when not -1).
    ``check`` is called with every folder reached, ``/`` first.
    Raises ``FileNotFoundError`` for a missing folder (without ``create``),
    :class:`UnsafePath` for a refused link or a component that is not a folder, and
    any other ``OSError`` as the OS gave it.
    """
    todo = deque(part for part in Path(os.path.abspath(folder)).parts[1:])
    fd = os.open("/", DIR_FLAGS)
    here = Path("/")
    links = 0
    try:
        if check is not None:
            check(fd, here)
        while todo:
            name = todo.popleft()
            if name in ("", "."):
                continue
            try:
                step = _open_or_make(fd, name, create, group)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise UnsafePath(errno.ENOTDIR, f"{here / name} is not a folder") from None
                if not may_follow(fd):
                    raise UnsafePath(errno.ELOOP, f"{here / name} is a symbolic link in a "
                                     "folder others can write; refusing to follow it") from None
                links += 1
                if links > MAX_LINKS:
                    raise UnsafePath(errno.ELOOP, f"too many symbolic links at {here / name}"
                                     ) from None
                target = os.readlink(name, dir_fd=fd)
                todo.extendleft(reversed(Path(target).parts))
                if target.startswith("/"):
                    todo.popleft()  # the "/" part: start again from the root
                    os.close(fd)
                    fd = os.open("/", DIR_FLAGS)
                    here = Path("/")
                continue
            os.close(fd)
            fd = step
            here = here.parent if name == ".." else here / name
            if check is not None:
                check(fd, here)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_or_make(fd: int, name: str, create: bool, group: int) -> int:
    try:
        return os.open(name, DIR_FLAGS, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            raise
    made_here = False
    with contextlib.suppress(FileExistsError):  # made by someone else meanwhile: use it
        os.mkdir(name, FOLDER_MODE, dir_fd=fd)
        made_here = True
    made = os.open(name, DIR_FLAGS, dir_fd=fd)
    try:
        if made_here:
            # mkdir's mode went through the umask (000 would give 0777): set it outright.
            os.fchmod(made, FOLDER_MODE)
            if group != -1:
                os.fchown(made, -1, group)
    except BaseException:
        os.close(made)
        raise
    return made


FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def read_file(path: Path, *, check: Check | None = None) -> bytes:
    """The bytes of the regular file at ``path``, reached as :func:`open_folder` reaches
    folders: a link, on the way or at the end, is followed only in a folder that only
    root (or the entrypoint's user) can write. So what was checked by path (``file()``
    in templates resolves and checks it first) is what is read, even if the app can
    write in that folder and swaps in a link meanwhile.

    ``O_NONBLOCK``: a FIFO must not hang the read; anything but a regular file is
    :class:`UnsafePath`. ``check`` (see :func:`open_folder`) also sees the file opened.
    """
    current = Path(os.path.abspath(path))
    for _ in range(MAX_LINKS):
        folder = open_folder(current.parent, check=check)
        try:
            try:
                fd = os.open(current.name, FILE_FLAGS, dir_fd=folder)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                if not may_follow(folder):
                    raise UnsafePath(errno.ELOOP, f"{current} is a symbolic link in a folder "
                                     "others can write; refusing to follow it") from None
                current = Path(os.path.normpath(current.parent /
                                                os.readlink(current.name, dir_fd=folder)))
                continue
        finally:
            os.close(folder)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UnsafePath(errno.EINVAL, f"{current} is not a regular file")
            if check is not None:
                check(fd, current)
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    raise UnsafePath(errno.ELOOP, f"too many symbolic links at {path}")
