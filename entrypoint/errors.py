"""One tree of errors; each carries the exit status ``main()`` turns it into.

    EntrypointError (70, internal)
    ├── UsageError (64)                 bad command line
    ├── ConfigError (78)                bad settings, references, templates
    │   ├── ReferenceSyntaxError        a value that looks like a reference but is not one
    │   ├── SecretNotFound              a path or key that does not exist
    │   └── TemplateError               a template that does not parse or render
    ├── UnavailableError (69)           a server cannot be reached in time
    ├── LeaseGone (69)                  a lease was revoked or is unknown to the server
    ├── PermissionDenied (77)           the server or the OS said no
    │   └── AuthError                   a login was refused
    ├── RenderError (73)                a destination cannot be written
    └── ChildStartError (126/127)       the command cannot be run

Messages name what was wrong, where, and what was expected. They never contain a
secret value or a token: callers pass paths, keys and variable names, not values.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: the fast --exec path imports this module
if TYPE_CHECKING:
    import logging

    from entrypoint.sources.base import Fetched

EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_NOPERM = 77
EX_CONFIG = 78
EX_NOT_EXECUTABLE = 126
EX_NOT_FOUND = 127


class EntrypointError(Exception):
    """Base of every error the entrypoint reports to the user."""

    exit_code: int = EX_SOFTWARE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class UsageError(EntrypointError):
    exit_code = EX_USAGE


class ConfigError(EntrypointError):
    exit_code = EX_CONFIG


class ReferenceSyntaxError(ConfigError):
    pass


class SecretNotFound(ConfigError):
    # Set by a source that watches on its own (Consul): the read that found nothing, to
    # watch for the path being made from (a blocking query from its index).
    absent: Fetched | None = None


class TemplateError(ConfigError):
    pass


class UnavailableError(EntrypointError):
    exit_code = EX_UNAVAILABLE


class LeaseGone(EntrypointError):
    """A lease the server no longer knows (revoked by ops, expired): fetch a successor."""

    exit_code = EX_UNAVAILABLE


class PermissionDenied(EntrypointError):
    exit_code = EX_NOPERM


class AuthError(PermissionDenied):
    pass


class RenderError(EntrypointError):
    exit_code = EX_CANTCREAT


class ChildStartError(EntrypointError):
    def __init__(self, message: str, exit_code: int, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = exit_code


def report_end(log: logging.Logger, error: BaseException, debug: bool) -> int:
    """Log the error that ends a resident loop (the supervisor's, the sidecar's) and
    return its exit status. ``main()`` never sees these errors, so the ``debug`` setting
    (its traceback) is applied here; an internal error always shows its traceback."""
    if isinstance(error, EntrypointError):
        log.error("%s", error, exc_info=error if debug else None)
        return error.exit_code
    log.error("internal error: %r", error, exc_info=error)
    return EX_SOFTWARE
