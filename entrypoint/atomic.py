"""Write a destination so that a reader sees the old bytes or the new ones, never a mix.

The steps (POSIX; ``os.replace`` is atomic within one filesystem, which is why the temp
file lives in the destination's own folder):

1. :func:`stage`: create the parent folders, write a temp file next to the destination,
   ``fsync`` it, set its mode and owner. Most failures (full disk, read-only folder,
   file size limit) happen here, before anything the app reads has been touched.
2. :func:`commit`: ``os.replace`` the temp file over the destination, then ``fsync``
   the folder so that the rename itself survives a crash.

On any failure the temp file is removed, the old destination is left as it was and a
:class:`RenderError` names the destination and the OS's reason (never the content).

A process killed between the two steps cannot remove its temp file. So each temp file is
``flock``-ed by its writer from creation until it is moved or removed, and :func:`stage`
first removes the destination's temp files whose lock it can take: their writer is dead
(the kernel drops a dead process's locks), and they hold secret content nobody will use.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import os
import pwd
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from entrypoint.errors import ConfigError, RenderError

KEEP = -1  # os.chown's "leave this id as it is"
# Staged temp files -> their open descriptor, which holds the file's lock until commit
# or discard closes it.
_held: dict[Path, int] = {}


@dataclass(frozen=True)
class Owner:
    """Numeric owner for a destination; ``KEEP`` leaves the id unchanged."""

    uid: int = KEEP
    gid: int = KEEP

    @property
    def changes(self) -> bool:
        return self.uid != KEEP or self.gid != KEEP


def resolve_owner(user: str | None, group: str | None, where: str) -> Owner:
    """Names or numbers to ids; an unknown name is a config error naming ``where``."""
    uid = gid = KEEP
    if user:
        try:
            uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
        except KeyError:
            raise ConfigError(f"{where}: user {user!r} does not exist",
                              hint="expected a user name or a numeric uid") from None
    if group:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError(f"{where}: group {group!r} does not exist",
                              hint="expected a group name or a numeric gid") from None
    return Owner(uid, gid)


def _reason(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__


def same_content(dest: Path, content: bytes) -> bool:
    """True when ``dest`` already holds exactly ``content`` (so it is not rewritten)."""
    try:
        with open(dest, "rb") as handle:
            # Read one byte more than needed: a longer file differs without reading it all.
            return handle.read(len(content) + 1) == content
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return False
    except OSError as exc:
        raise RenderError(f"cannot read destination {dest} to compare: {_reason(exc)}") from None


def _write_all(fd: int, content: bytes) -> None:
    view = memoryview(content)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def stage(dest: Path, content: bytes, perms: int, owner: Owner = Owner()) -> Path:
    """Write ``content`` to a temp file beside ``dest``; returns the temp file's path."""
    folder = dest.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RenderError(f"cannot write {dest}: cannot create folder {folder}: "
                          f"{_reason(exc)}") from None
    remove_abandoned(dest)
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=f".{dest.name}.", suffix=".tmp")
    except OSError as exc:
        raise RenderError(f"cannot write {dest}: cannot create a file in {folder}: "
                          f"{_reason(exc)}") from None
    temp = Path(name)
    try:
        # Blocking: another stage() may hold it for the instant it checks whether we
        # are alive.
        fcntl.flock(fd, fcntl.LOCK_EX)
        _write_all(fd, content)
        os.fsync(fd)
        os.fchmod(fd, perms)
        if owner.changes:
            os.fchown(fd, owner.uid, owner.gid)
    except OSError as exc:
        os.close(fd)
        _discard(temp)
        raise RenderError(f"cannot write {dest}: {_reason(exc)}") from None
    except BaseException:
        os.close(fd)
        _discard(temp)
        raise
    _held[temp] = fd
    return temp


def _temp_name(dest: Path) -> re.Pattern[str]:
    """Names mkstemp gives this destination's temp files (8 random characters)."""
    return re.compile(rf"\.{re.escape(dest.name)}\.[a-z0-9_]{{8}}\.tmp\Z")


def remove_abandoned(dest: Path) -> list[Path]:
    """Remove temp files of ``dest`` left by a writer that died before moving them."""
    pattern = _temp_name(dest)
    try:
        names = os.listdir(dest.parent)
    except OSError:
        return []
    removed = []
    for name in names:
        path = dest.parent / name
        if not pattern.match(name) or path in _held:
            continue
        try:
            # O_NONBLOCK: a FIFO planted under such a name must not hang us.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # locked: its writer is alive and will move or remove it
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
        finally:
            os.close(fd)
    return removed


def commit(temp: Path, dest: Path) -> None:
    """Move a staged temp file over ``dest`` and make the rename durable."""
    try:
        os.replace(temp, dest)
    except OSError as exc:
        _discard(temp)
        raise RenderError(f"cannot write {dest}: {_reason(exc)}") from None
    finally:
        _release(temp)
    _fsync_folder(dest.parent)


def discard(temps: list[Path]) -> None:
    """Remove staged temp files that will not be committed."""
    for temp in temps:
        _discard(temp)


def _discard(temp: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()
    _release(temp)


def _release(temp: Path) -> None:
    fd = _held.pop(temp, None)
    if fd is not None:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some filesystems cannot fsync a folder; the file itself is already on disk.
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise RenderError(f"cannot sync folder {folder}: {_reason(exc)}") from None
    finally:
        os.close(fd)


def fix_mode(dest: Path, perms: int, owner: Owner = Owner()) -> bool:
    """Bring an unchanged file's mode and owner in line with its spec; True if it changed."""
    try:
        st = os.stat(dest)
        changed = False
        if st.st_mode & 0o7777 != perms:
            os.chmod(dest, perms)
            changed = True
        if (owner.uid not in (KEEP, st.st_uid)) or (owner.gid not in (KEEP, st.st_gid)):
            os.chown(dest, owner.uid, owner.gid)
            changed = True
    except OSError as exc:
        raise RenderError(f"cannot set mode or owner of {dest}: {_reason(exc)}") from None
    return changed
