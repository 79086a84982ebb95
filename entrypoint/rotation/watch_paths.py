"""Paths as the file watch sees them: where a path leads, and the folders whose links it
goes through (``file_watch.py``)."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def link_folders(path: str, limit: int = 40) -> set[str]:
    """The folders holding a symbolic link met on the way from ``path`` to where it
    leads (as the kernel resolves it: component by component, a link's target in place
    of the link)."""
    folders: set[str] = set()
    pending = list(reversed(absolute(path).split(os.sep)))
    current = os.sep
    hops = 0
    while pending:
        name = pending.pop()
        if name in ("", "."):
            continue
        if name == "..":
            current = os.path.dirname(current)
            continue
        candidate = os.path.join(current, name)
        try:
            target = os.readlink(candidate)
        except OSError:  # not a link (or not there): a plain step
            current = candidate
            continue
        hops += 1
        if hops > limit:  # a loop: the kernel gives up at 40 too
            break
        folders.add(current)
        if os.path.isabs(target):
            current = os.sep
        pending.extend(reversed(target.split(os.sep)))
    return folders


def nearest_folder(path: str) -> str:
    """``path``, or the nearest folder above it that exists."""
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


Identity = tuple[int, int]  # (st_dev, st_ino)


def identity(path: str) -> Identity | None:
    """Which folder ``path`` names now (None: none, or a link): inotify watches that
    folder, not the name, so a watch is on the folder a path names only while this is
    what it was when the watch was set."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def realpath(path: str | Path) -> str:
    """``os.path.realpath``, which on Python 3.11 raises when a link goes between its
    ``lstat`` and its ``readlink`` (the kubelet's ``..data_tmp``): then the path as given."""
    try:
        return os.path.realpath(path)
    except OSError:
        return os.path.abspath(path)


def absolute(path: str | Path) -> str:
    """``path`` from the root, its ``..`` left in place: after a link, the kernel takes
    ``..`` from where the link led (``os.path.abspath`` would cut it by text)."""
    return os.path.join(os.getcwd(), path)


def content_mark(path: str | Path) -> int | None:
    """What a regular file holds, to tell later whether it changed; None if it cannot be
    read or is not a regular file. Opened without blocking and checked before the read:
    a template path that is a FIFO hung the start at its open, one leading to /dev/zero
    read until memory ran out (the render, after, refuses both)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a folder cannot even be fdopen()ed
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return hash(b"".join(chunks))
    except OSError:
        return None
    finally:
        os.close(fd)
