"""Plain words for Python's exceptions, for messages users read.

``ConnectionError``, ``MaxRetryError`` or ``IsADirectoryError`` name a class of a library,
not what happened; the user needs "connection refused" or "is a folder". The exception's
own text is not used whole: urllib3's repeats the URL and nests three levels of wrappers.
"""

from __future__ import annotations

import errno

_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.ENOENT: "no such file or socket",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "is a folder",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.ETIMEDOUT: "timed out",
    errno.EHOSTUNREACH: "no route to host",
    errno.ENETUNREACH: "network unreachable",
}


def os_reason(exc: BaseException) -> str:
    """``PermissionError`` -> "permission denied"; a decoding error -> "not UTF-8 text"."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start})"
    if isinstance(exc, OSError):
        if exc.errno in _ERRNO_WORDS:
            return _ERRNO_WORDS[exc.errno]
        if exc.strerror:
            return exc.strerror[:1].lower() + exc.strerror[1:]
    return "unexpected error"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: causes, contexts, urllib3's ``reason``, exception args."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 20:
        item = todo.pop(0)
        if any(item is s for s in seen):
            continue
        seen.append(item)
        nested = [getattr(item, "reason", None), item.__cause__, item.__context__,
                  *item.args]
        todo += [n for n in nested if isinstance(n, BaseException)]
    return seen


def transport_reason(exc: BaseException) -> str:
    """What went wrong on the way to a server: "connection refused", "timed out", ..."""
    import socket
    import ssl  # only here: the local path never loads TLS (resident memory)

    chain = _chain(exc)
    for item in chain:
        if isinstance(item, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted ({item.verify_message or 'verify failed'})"
        if isinstance(item, ssl.SSLError):
            return "TLS handshake failed (" + (item.reason or "").lower().replace("_", " ") + ")"
        if isinstance(item, socket.gaierror):
            return "host name not found"
        if isinstance(item, TimeoutError | socket.timeout):
            return "timed out"
        if isinstance(item, OSError) and item.errno is not None:
            return os_reason(item)
    names = " ".join(type(item).__name__ for item in chain)
    if "Timeout" in names:  # requests' and urllib3's own timeout classes
        return "timed out"
    if "SSL" in names:
        return "TLS failed"
    if "RemoteDisconnected" in names or "ProtocolError" in names:
        return "the server closed the connection"
    return "connection failed"


def error_kind(exc: BaseException) -> str:
    """What kind of failure ``exc`` is, in words, for a message that may not quote it
    (a template error whose text could hold a secret value)."""
    from entrypoint import errors

    kinds: tuple[tuple[type[BaseException], str], ...] = (
        (errors.SecretNotFound, "not found"),
        (errors.ReferenceSyntaxError, "not a valid reference"),
        (errors.TemplateError, "not a valid argument"),
        (errors.AuthError, "login refused"),
        (errors.PermissionDenied, "permission denied"),
        (errors.UnavailableError, "the server is unavailable"),
        (errors.LeaseGone, "the lease is gone"),
        (errors.ConfigError, "a configuration error"),
        (ZeroDivisionError, "a division by zero"),
        (OverflowError, "a number too large"),
        (KeyError, "a missing key"),
        (IndexError, "an index out of range"),
        (RecursionError, "recursion too deep"),
        (ValueError, "a value of the wrong form"),
        (TypeError, "an operation on a value of the wrong type"),
    )
    return next((words for kind, words in kinds if isinstance(exc, kind)), "an error")


def value_kind(value: object) -> str:
    """A TOML or JSON value's type as users name it: "a boolean", not "a bool"."""
    import datetime

    kinds: tuple[tuple[type | tuple[type, ...], str], ...] = (
        (bool, "a boolean"), (int, "a whole number"), (float, "a number"), (str, "a string"),
        (list, "a list"), (dict, "a table"),
        ((datetime.date, datetime.time), "a date or time"),
    )
    return next((words for kind, words in kinds if isinstance(value, kind)), "another type")
