"""Write a destination so that a reader sees the old bytes or the new ones, never a mix,
and without following a link the app could have planted.

The steps (POSIX; ``rename`` is atomic within one filesystem, which is why the temp file
lives in the destination's own folder):

1. :func:`stage`: open the destination's folder (creating missing folders ``0750``),
   write a temp file in it, ``fsync`` it, set its mode and owner. Most failures (full
   disk, read-only folder, file size limit) happen here, before anything the app reads
   has been touched.
2. :func:`commit`: rename the temp file over the destination, then ``fsync`` the folder
   so that the rename itself survives a crash.

The app may be able to write in a destination's folder, and the entrypoint is root. So
every step works on descriptors from a walk of the path (:mod:`entrypoint.render.safepath`) that
never follows a symbolic link planted in a folder others can write; the destination is
opened with ``O_NOFOLLOW`` and must be a regular file (a FIFO would hang the render); its
mode and owner are corrected with ``fchmod``/``fchown`` on the descriptor that was
compared, so a link swapped in meanwhile is never followed.

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
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from entrypoint.errors import ConfigError, RenderError
from entrypoint.render.safepath import open_folder, reason

KEEP = -1  # os.chown's "leave this id as it is"
# Staged temp files -> their folder's descriptor and their own, which holds the file's
# lock until commit or discard closes it.
_held: dict[Path, tuple[int, int]] = {}  # temp file -> (folder fd, file fd)


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


_KINDS = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
          stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFLNK: "a symbolic link"}
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _not_regular(dest: Path, mode: int) -> RenderError:
    kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
    return RenderError(f"cannot write {dest}: it is {kind}, not a regular file; refusing to "
                       "follow or replace it", hint="remove it, or choose another destination")


def _folder(dest: Path, *, create: bool = False, group: int = KEEP) -> int:
    """The destination's folder, reached safely; a RenderError names the destination."""
    try:
        return open_folder(dest.parent, create=create, group=group)
    except FileNotFoundError:
        if not create:
            raise  # no folder, so no file: the caller's answer, not an error
        raise RenderError(f"cannot write {dest}: a folder of {dest.parent} vanished while "
                          "it was created") from None
    except OSError as exc:
        what = "cannot create folder" if create else "cannot open folder"
        raise RenderError(f"cannot write {dest}: {what} {dest.parent}: {reason(exc)}") from None


def existing(dest: Path, content: bytes, perms: int, owner: Owner = Owner()) -> bool | None:
    """Compare ``dest`` with ``content``; when equal, correct its mode and owner.

    Returns None when the bytes differ (or there is no file), else whether the mode or
    owner had to be corrected. Works on one ``O_NOFOLLOW`` descriptor throughout, so a
    link swapped in at any moment is never followed; anything but a regular file is a
    :class:`RenderError`. A file with other hard links is reported as different, so it is
    replaced rather than chmod-ed: the other names could be anyone's.
    """
    try:
        folder = _folder(dest)
    except FileNotFoundError:
        return None
    try:
        try:
            st = os.stat(dest.name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(st.st_mode):
            return None  # the rename over it fails, naming the destination; nothing followed
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(dest, st.st_mode)
        # Not opened unless it was a regular file: opening a device can have side effects.
        fd = os.open(dest.name, _READ, dir_fd=folder)
        try:
            return _same_then_fix(fd, dest, content, perms, owner)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a link between the stat and the open
            raise _not_regular(dest, stat.S_IFLNK) from None
        raise RenderError(f"cannot read destination {dest} to compare: {reason(exc)}") from None
    finally:
        os.close(folder)


def _same_then_fix(fd: int, dest: Path, content: bytes, perms: int,
                   owner: Owner) -> bool | None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(dest, st.st_mode)
    if st.st_nlink != 1 or st.st_size != len(content) or _read_all(fd, len(content)) != content:
        return None
    changed = False
    try:
        if st.st_mode & 0o7777 != perms:
            os.fchmod(fd, perms)
            changed = True
        if (owner.uid not in (KEEP, st.st_uid)) or (owner.gid not in (KEEP, st.st_gid)):
            os.fchown(fd, owner.uid, owner.gid)
            changed = True
    except OSError as exc:
        raise RenderError(f"cannot set mode or owner of {dest}: {reason(exc)}") from None
    return changed


def _read_all(fd: int, size: int) -> bytes:
    # One byte more than needed: a file that grew meanwhile differs without reading it all.
    chunks: list[bytes] = []
    left = size + 1
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, content: bytes) -> None:
    view = memoryview(content)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _folder_group(owner: Owner) -> int:
    """Group of folders created for a destination: the file's group, so that whoever may
    read the file can reach it (the folder is 0750)."""
    if owner.gid != KEEP:
        return owner.gid
    if owner.uid != KEEP:
        with contextlib.suppress(KeyError):
            return pwd.getpwuid(owner.uid).pw_gid
    return KEEP


def stage(dest: Path, content: bytes, perms: int, owner: Owner = Owner()) -> Path:
    """Write ``content`` to a temp file beside ``dest``; returns the temp file's path."""
    folder = _folder(dest, create=True, group=_folder_group(owner))
    try:
        _remove_abandoned(folder, dest)
        fd, name = _create_temp(folder, dest)
    except OSError as exc:
        os.close(folder)
        raise RenderError(f"cannot write {dest}: cannot create a file in {dest.parent}: "
                          f"{reason(exc)}") from None
    temp = dest.parent / name
    _held[temp] = (folder, fd)
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
        _discard(temp)
        raise RenderError(f"cannot write {dest}: {reason(exc)}") from None
    except BaseException:
        _discard(temp)
        raise
    return temp


def _create_temp(folder: int, dest: Path) -> tuple[int, str]:
    """As mkstemp (0600, O_EXCL, same names), but inside the folder's descriptor."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789_"
    for _ in range(100):
        name = f".{dest.name}.{''.join(secrets.choice(alphabet) for _ in range(8))}.tmp"
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            return os.open(name, flags, 0o600, dir_fd=folder), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temp file name")


def _temp_name(dest: Path) -> re.Pattern[str]:
    """Names :func:`_create_temp` gives this destination's temp files."""
    return re.compile(rf"\.{re.escape(dest.name)}\.[a-z0-9_]{{8}}\.tmp\Z")


def remove_abandoned(dest: Path) -> list[Path]:
    """Remove temp files of ``dest`` left by a writer that died before moving them."""
    try:
        folder = open_folder(dest.parent)
    except OSError:
        return []
    try:
        return _remove_abandoned(folder, dest)
    finally:
        os.close(folder)


def _remove_abandoned(folder: int, dest: Path) -> list[Path]:
    pattern = _temp_name(dest)
    removed = []
    for name in os.listdir(folder):
        path = dest.parent / name
        if not pattern.match(name) or path in _held:
            continue
        try:
            # O_NONBLOCK: a FIFO planted under such a name must not hang us.
            fd = os.open(name, _READ, dir_fd=folder)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # locked: its writer is alive and will move or remove it
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=folder)
                removed.append(path)
        finally:
            os.close(fd)
    return removed


def commit(temp: Path, dest: Path) -> None:
    """Move a staged temp file over ``dest`` and make the rename durable."""
    folder, _ = _held[temp]
    try:
        # rename() replaces a link planted at the destination; it never follows it.
        os.rename(temp.name, dest.name, src_dir_fd=folder, dst_dir_fd=folder)
    except OSError as exc:
        _discard(temp)
        raise RenderError(f"cannot write {dest}: {reason(exc)}") from None
    try:
        _fsync_folder(folder, dest.parent)
    finally:
        _release(temp)


def discard(temps: list[Path]) -> None:
    """Remove staged temp files that will not be committed."""
    for temp in temps:
        _discard(temp)


def _discard(temp: Path) -> None:
    held = _held.get(temp)
    if held is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp.name, dir_fd=held[0])
    _release(temp)


def _release(temp: Path) -> None:
    held = _held.pop(temp, None)
    if held is not None:
        os.close(held[1])
        os.close(held[0])


def _fsync_folder(fd: int, folder: Path) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some filesystems cannot fsync a folder; the file itself is already on disk.
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise RenderError(f"cannot sync folder {folder}: {reason(exc)}") from None
