"""Bounds on one template's render: a deadline and a cap on the text it produces.

A template is code: ``{% for i in range(100000) %}{% for j in range(100000) %}`` runs for
hours, and a loop that prints grows the entrypoint's memory until the kernel kills it.
At start that hangs the container; at rotation it hangs (or kills) the thread that keeps
the app's credentials fresh.

**The deadline** (``template_timeout``). Jinja has no hook inside a loop, so the only way
to stop pure-Python template code is from outside: when the time is up, a timer thread
raises :class:`TimeUp` *in the rendering thread* (``PyThreadState_SetAsyncExc``; CPython
delivers it at the thread's next bytecode). Time spent fetching secrets is not counted:
the deadline is paused around every fetch, which has its own timeouts and retries, and an
exception must never land inside a network client. Arming and disarming go through one
lock, and disarming clears an exception not yet delivered, so none arrives after the
render has ended. An exception that lands in a garbage-collector callback or a
``__del__`` is reported and dropped by CPython, and the render would go on: so while the
thread is still inside the render (``inside``, a code object on its stack), it is raised
again every ``REFIRE`` seconds.

**The size cap** (``template_max_bytes``): the text is produced chunk by chunk and counted
as it comes. What makes a huge string in one step, which no chunk count can stop, is
checked before it runs: ``*``, ``**``, ``%`` and ``format`` widths, ``center``/``ljust``/
``rjust``/``zfill``/``expandtabs``, and the ``center``, ``indent`` and ``format`` filters.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import CodeType
from typing import Any

from entrypoint.errors import TemplateError


class TimeUp(BaseException):
    """Raised in the rendering thread at the deadline. A BaseException, so that no
    ``except Exception`` on the way (Jinja's, a filter's) can swallow it."""


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    """Have ``thread_id`` raise ``exc`` at its next bytecode; None clears a pending one."""
    import ctypes  # only when a deadline passes: it costs resident memory

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id),
                                               ctypes.py_object(exc) if exc else None)


# Seconds between interruptions of a render that is still going after one was dropped.
REFIRE = 0.1


class Deadline:
    """``seconds`` of rendering for the calling thread, not counting :meth:`paused` time.

    One watchdog thread per render (not one per pause: a template may call ``secret()``
    a thousand times), waiting on a condition for the time left while the clock runs.
    ``inside`` is the code of the function that runs the render: while a frame of it is on
    the thread's stack, an interruption that was dropped is raised again.
    """

    def __init__(self, seconds: float, inside: CodeType | None = None) -> None:
        self.left = seconds
        self.fired = False
        self._inside = inside
        self._target = threading.get_ident()
        self._cond = threading.Condition()
        self._running = False
        self._closed = False
        self._since = 0.0
        self._watchdog = threading.Thread(target=self._watch, name="template-deadline",
                                          daemon=True)

    def __enter__(self) -> Deadline:
        self._watchdog.start()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify()

    def _watch(self) -> None:
        with self._cond:
            while not self._closed:
                if not self._running:
                    self._cond.wait()
                    continue
                remaining = self.left - (time.monotonic() - self._since)
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                if self.fired and not self._still_inside():
                    return  # delivered: the thread has left the render
                self.fired = True
                # Under the lock, as stop() clears a pending one under it: none can be
                # set after the render has stopped the clock.
                _raise_in(self._target, TimeUp)
                self._cond.wait(REFIRE)

    def _still_inside(self) -> bool:
        frame = sys._current_frames().get(self._target)
        while frame is not None and self._inside is not None:
            if frame.f_code is self._inside:
                return True
            frame = frame.f_back
        return False

    def start(self) -> None:
        with self._cond:
            if not self._running and not self.fired:
                self._running = True
                self._since = time.monotonic()
                self._cond.notify()

    def stop(self) -> None:
        """Stop the clock: no :class:`TimeUp` is raised once this returns (it may be
        raised by this call itself, when the deadline has just passed)."""
        with self._cond:
            if self._running:
                self._running = False
                self.left -= time.monotonic() - self._since
                self._cond.notify()
            if self.fired:
                _raise_in(self._target, None)  # one not yet delivered: the caller reports it

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Not counted: a fetch, which has its own timeouts and must not be interrupted."""
        self.stop()
        if self.fired:
            raise TimeUp
        yield
        self.start()


class TooLarge(Exception):
    """The template's text passed ``template_max_bytes``."""


def check_repeat(op: str, left: Any, right: Any, max_bytes: int) -> None:
    """Refuse ``seq * n``, ``a ** b`` and ``'%Ns' % x`` whose result would pass the cap,
    before they run."""
    if op == "*":
        for seq, times in ((left, right), (right, left)):
            sized = isinstance(seq, str | bytes | list | tuple) and isinstance(times, int)
            if sized and len(seq) * times > max_bytes:
                raise TooLarge
    elif op == "**" and _power_bits(left, right) > max_bytes * 8:
        raise TooLarge
    elif op == "%":
        check_widths(left, max_bytes)


# A printf width or precision ("%99999999s"), or a format-spec width ("{:>99999999}").
_PRINTF_WIDTH = re.compile(r"%[-#0 +]*(\d*)(?:\.(\d+))?")
_FORMAT_WIDTH = re.compile(r"\{[^{}]*:[^{}]*?(\d+)")
# str methods whose result grows with an argument, not with the string.
_PADDING = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


def check_widths(text: Any, max_bytes: int) -> None:
    """Refuse a format string asking for a field wider than the cap."""
    if not isinstance(text, str):
        return
    for match in (*_PRINTF_WIDTH.finditer(text), *_FORMAT_WIDTH.finditer(text)):
        if any(group and int(group) > max_bytes for group in match.groups()):
            raise TooLarge


def check_call(obj: Any, args: tuple[Any, ...], max_bytes: int) -> None:
    """Refuse ``s.center(N)`` and the like, and ``s.format(...)`` with huge widths."""
    # The sandbox hands out str.format wrapped; the wrapper keeps it as __wrapped__.
    method = getattr(obj, "__wrapped__", obj)
    owner = getattr(method, "__self__", None)
    if not isinstance(owner, str):
        return
    name = getattr(method, "__name__", "")
    if name in _PADDING:
        widest = max((a for a in args if isinstance(a, int)), default=0)
        grown = widest * max(owner.count("\t"), 1) if name == "expandtabs" else widest
        if grown > max_bytes:
            raise TooLarge
    elif name in ("format", "format_map"):
        check_widths(owner, max_bytes)


def _power_bits(base: Any, exponent: Any) -> int:
    """About how many bits ``base ** exponent`` has (0 when it cannot grow large)."""
    if not isinstance(base, int) or not isinstance(exponent, int) or exponent <= 0:
        return 0
    return exponent * abs(base).bit_length() if abs(base) > 1 else 0


def collect(chunks: Iterator[str], max_bytes: int) -> str:
    """Join the text as it is produced; :class:`TooLarge` as soon as it passes the cap."""
    size = 0
    parts: list[str] = []
    for chunk in chunks:
        size += len(chunk.encode("utf-8", "replace"))
        if size > max_bytes:
            raise TooLarge
        parts.append(chunk)
    return "".join(parts)


def too_large(label: str, max_bytes: int) -> TemplateError:
    return TemplateError(f"{label}: renders more than template_max_bytes ({max_bytes} bytes)",
                         hint="raise template_max_bytes if that much text is expected")


def too_slow(label: str, seconds: float) -> TemplateError:
    return TemplateError(f"{label}: took longer than template_timeout ({seconds:g}s) to "
                         "render", hint="a loop that never ends? raise template_timeout if "
                         "the template is meant to take that long")
