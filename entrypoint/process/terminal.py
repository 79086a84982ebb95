"""The terminal (``docker run -it``): the app's group gets its foreground, and keeps it.

Handing the foreground over happens in the parent once the child exists (tini does it in
the child before ``exec``, which a Popen start cannot). A child quick enough to touch the
terminal before that is stopped by SIGTTIN or SIGTTOU (an interactive shell stops itself
that way until it is the foreground: dash, bash), and nothing would ever continue it. So
the supervisor watches its child for stops, and continues the group when the child was
stopped by SIGTTIN/SIGTTOU while its group is the foreground already: the reason for the
stop is gone, and the child simply tries again. Any other stop is left alone.
"""

from __future__ import annotations

import logging
import os
import signal

from entrypoint.process import signals

TERMINAL_STOPS = frozenset({signal.SIGTTIN, signal.SIGTTOU})


def controlling_terminal() -> int | None:
    """Our stdin when it is a terminal whose foreground we hold, else None."""
    try:
        if os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp():
            return 0
    except OSError:
        pass
    return None


def give_terminal(fd: int, pgid: int) -> None:
    """Make the child's group the terminal's foreground, so it can read it and gets ^C.

    SIGTTOU is blocked around the call because once a previous child held the foreground
    we are a background process, and tcsetpgrp from the background is only allowed when
    SIGTTOU is blocked or ignored (``signals.install`` blocks it for good; this keeps the
    function right on its own).
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})
    try:
        os.tcsetpgrp(fd, pgid)
    except OSError:
        pass  # the terminal went away or is not ours any more: nothing to hand over
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def resume_if_held_back(fd: int | None, pgid: int, status: int,
                        log: logging.Logger) -> bool:
    """Continue the group ``pgid`` if its leader (status ``status``) stopped only because
    it was not the terminal's foreground yet, and now is. True if it was continued."""
    if fd is None or not os.WIFSTOPPED(status) or os.WSTOPSIG(status) not in TERMINAL_STOPS:
        return False
    try:
        if os.tcgetpgrp(fd) != pgid:
            return False  # it is in the background for real (its own job control)
    except OSError:
        return False
    log.debug("child stopped by %s before it had the terminal; continuing it",
              signals.name(os.WSTOPSIG(status)))
    return signals.send(pgid, signal.SIGCONT, group=True)
