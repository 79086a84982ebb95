"""``USER[:GROUP]`` -> the uid, gid and supplementary groups the app runs with.

Shared by the supervisor and exec mode. The rules follow su-exec/gosu:

- ``USER`` is a name from the image's ``/etc/passwd`` or a number. A name brings its
  primary group and every group it belongs to (``getgrouplist``).
- ``USER:GROUP`` sets the primary group and *only* that group: asking for a group is
  asking not to inherit the others.
- A number with no passwd entry (an arbitrary uid, as OpenShift assigns) runs with the
  same number as its group, never with root's group 0.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass

from entrypoint.errors import EX_NOT_EXECUTABLE, ChildStartError, ConfigError

_MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to the kernel, so it is not an id


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: tuple[int, ...]
    spec: str  # as the user wrote it, for messages and logs

    def __str__(self) -> str:
        return f"{self.spec} (uid={self.uid} gid={self.gid})"


def resolve_user(spec: str) -> Identity:
    """Look ``spec`` up now, so that a typo fails at start (exit 78), not at the first spawn."""
    user, sep, group = spec.strip().partition(":")
    if not user or (sep and not group) or ":" in group:
        raise ConfigError(f"user = {spec!r}: expected USER or USER:GROUP",
                          hint="names or numbers, e.g. app, 1000 or app:app")
    entry = _passwd_entry(user, spec)
    if entry is not None:
        uid, name = entry.pw_uid, entry.pw_name
    else:
        uid, name = _number(user, "user", spec), None
    if group:
        gid = _group_id(group, spec)
        groups: tuple[int, ...] = (gid,)
    elif name is not None and entry is not None:
        gid = entry.pw_gid
        groups = tuple(dict.fromkeys(os.getgrouplist(name, gid)))
    else:
        gid = uid
        groups = (gid,)
    return Identity(uid=uid, gid=gid, groups=groups, spec=spec)


def become(identity: Identity) -> None:
    """Switch this process to ``identity`` for good: exec mode, just before ``execve``.

    Groups first and uid last: once the uid is dropped, the groups can no longer change.
    """
    try:
        os.setgroups(list(identity.groups))
        os.setgid(identity.gid)
        os.setuid(identity.uid)
    except PermissionError as exc:
        raise ChildStartError(f"cannot switch to user {identity}: {exc.strerror}",
                              EX_NOT_EXECUTABLE,
                              hint="the entrypoint must run as root to use user") from None


def _passwd_entry(user: str, spec: str) -> pwd.struct_passwd | None:
    if user.isdigit():
        try:
            return pwd.getpwuid(_number(user, "user", spec))
        except KeyError:
            return None  # a bare number need not be in /etc/passwd
    try:
        return pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"user = {spec!r}: no user named {user!r} in /etc/passwd",
                          hint="create it in the image, or give a number") from None


def _group_id(group: str, spec: str) -> int:
    if group.isdigit():
        return _number(group, "group", spec)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(f"user = {spec!r}: no group named {group!r} in /etc/group",
                          hint="create it in the image, or give a number") from None


def _number(text: str, what: str, spec: str) -> int:
    value = int(text)
    if value > _MAX_ID:
        raise ConfigError(f"user = {spec!r}: {what} id {value} is out of range",
                          hint=f"at most {_MAX_ID}")
    return value
