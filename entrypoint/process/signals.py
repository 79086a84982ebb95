"""Which signals the supervisor takes, how it takes them, and what the child starts with.

Handlers only enqueue the signal number (``SimpleQueue.put_nowait`` is reentrant), and
so does the one thread that ``sigwait``s for WAITED; the main loop does the rest. No
logging, locks or I/O in handler context: that is how gunicorn deadlocked on its logging
lock (gunicorn PR #3441).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

# Every signal someone can send us reaches the app, except those with a meaning of their
# own: SIGCHLD (reap), SIGPIPE and SIGXFSZ (the kernel sends them for the entrypoint's own
# failed writes; Python ignores them). Forwarding a signal we do not act on is what tini and
# dumb-init do; leaving it at its default action would kill the entrypoint and orphan the app.
NOT_FORWARDED: frozenset[int] = frozenset({
    signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ,
})
FORWARDED: frozenset[int] = frozenset(signal.valid_signals()) - NOT_FORWARDED
# Received by the supervisor, these also mean "the container is being stopped".
SHUTDOWN: frozenset[int] = frozenset({signal.SIGTERM, signal.SIGINT})
# Blocked in every thread and taken by ``sigwait`` on a thread of their own, not by a handler:
# - the synchronous ones: a real fault in the entrypoint must still kill it (the kernel
#   forces the default action of a blocked fault signal) instead of re-running the faulting
#   instruction after a handler forever; only one sent with kill() is pending for sigwait.
# - SIGTTIN/SIGTTOU: blocked, our own log line on a terminal whose foreground the app holds
#   (with ``stty tostop``) is written instead of stopping us or raising a signal that we
#   would forward to the app.
WAITED: frozenset[int] = frozenset({
    signal.SIGILL, signal.SIGTRAP, signal.SIGABRT, signal.SIGBUS, signal.SIGFPE,
    signal.SIGSEGV, signal.SIGSYS, signal.SIGTTIN, signal.SIGTTOU,
})
# Signals whose default action would end a process: sending one to a child that has not
# installed its handler yet would kill it (dumb-init#136), so deliveries to a new child wait.
FATAL_BY_DEFAULT: frozenset[int] = frozenset(
    s for s in FORWARDED
    if s not in (signal.SIGCONT, signal.SIGURG, signal.SIGWINCH, signal.SIGTSTP,
                 signal.SIGTTIN, signal.SIGTTOU))

# Every signal the child should find at its default disposition (valid_signals leaves out
# glibc's own 32 and 33; the spawn path resets those too, see child.py).
CHILD_DEFAULTS: frozenset[int] = frozenset(signal.valid_signals()) - {
    signal.SIGKILL, signal.SIGSTOP}

_waiter: threading.Thread | None = None


def name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def install(put: Callable[[int], None]) -> None:
    """Route FORWARDED and SIGCHLD to ``put``; block WAITED and start the thread that waits.

    The rest of the mask is cleared because threads and ``subprocess`` children inherit it:
    a mask handed down from our own parent would otherwise block signals in the child too.
    Signals our parent left ignored get a no-op handler instead, because an ignored
    disposition survives ``exec`` and the child must start with the defaults.
    """
    global _waiter

    def handler(signum: int, frame: FrameType | None) -> None:
        put(signum)

    def ignore(signum: int, frame: FrameType | None) -> None:
        pass

    # WAITED get the handler too: they arrive through it while ``unblocked`` lifts the mask.
    for signum in sorted(FORWARDED | {signal.SIGCHLD}):
        signal.signal(signum, handler)
    for signum in sorted(CHILD_DEFAULTS - FORWARDED - {signal.SIGCHLD, signal.SIGPIPE}):
        with contextlib.suppress(OSError, ValueError):
            if signal.getsignal(signum) == signal.SIG_IGN:
                signal.signal(signum, ignore)
    signal.pthread_sigmask(signal.SIG_SETMASK, WAITED)
    _put[0] = put
    if _waiter is None:
        _waiter = threading.Thread(target=_wait_forever, name="entrypoint-sigwait",
                                   daemon=True)
        _waiter.start()


_put: list[Callable[[int], None]] = [lambda signum: None]


def _wait_forever() -> None:
    block_in_this_thread()
    while True:
        _put[0](signal.sigwait(WAITED))


@contextlib.contextmanager
def unblocked() -> Iterator[None]:
    """Clear this thread's mask while a child is started: it inherits the mask as it is."""
    old = signal.pthread_sigmask(signal.SIG_SETMASK, ())
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def block_in_this_thread() -> None:
    """Keep the handled signals off a worker thread, so the kernel delivers them to the
    main thread and wakes its queue at once (threads started from here inherit this)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED | {signal.SIGCHLD})


def handles(pid: int, signum: int) -> bool | None:
    """Whether ``pid`` has a handler for ``signum`` or ignores it (None: cannot tell)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
    except (OSError, ValueError):
        return None
    try:
        mask = int(fields["SigCgt"], 16) | int(fields["SigIgn"], 16)
    except (KeyError, ValueError):
        return None
    return bool(mask & (1 << (signum - 1)))


def send(pid: int, signum: int, *, group: bool) -> bool:
    """Send to ``pid``'s process group or to ``pid`` alone; False if nobody is left."""
    try:
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
