"""watchdog's Observer is imported without ``ctypes.util`` (rotation/watch_observer.py):
watchdog 7.1 imports it and never calls it, and it brings shutil, tempfile, bz2, lzma and
zlib into the resident supervisor. Each case runs in a fresh interpreter, since what is
checked is what an import leaves in ``sys.modules``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.cli import REPO, without_site_hooks

SKIPPED = ("ctypes.util", "shutil", "tempfile", "bz2", "lzma", "zlib")


def fresh(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter (``-S``: see ``without_site_hooks``); what it
    puts in ``out`` comes back."""
    program = f"import json, sys\nout = {{}}\n{code}\nprint(json.dumps(out))"
    result = subprocess.run([sys.executable, "-S", "-c", program], cwd=REPO,
                            env=without_site_hooks(os.environ), capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded: dict[str, object] = json.loads(result.stdout)
    return loaded


def test_the_observer_comes_without_ctypes_util_and_still_watches(tmp_path: Path) -> None:
    out = fresh(f"""
import os, queue
from entrypoint.rotation.watch_observer import _inotify_observer_class
out["before"] = [m for m in {SKIPPED!r} if m in sys.modules]
Observer = _inotify_observer_class()
out["after"] = [m for m in {SKIPPED!r} if m in sys.modules]
from watchdog.events import FileSystemEventHandler
seen = queue.Queue()
class Handler(FileSystemEventHandler):
    def on_any_event(self, event):
        seen.put(event.src_path)
observer = Observer()
observer.schedule(Handler(), {str(tmp_path)!r})
observer.start()
with open(os.path.join({str(tmp_path)!r}, "edited"), "w") as f:
    f.write("x")
out["event"] = seen.get(timeout=20)
out["observer"] = type(observer).__name__
observer.stop()
observer.join(20)
""")
    assert out["before"] == []  # a fresh interpreter: none of it loaded yet
    assert out["after"] == []  # and importing watchdog left none of it behind
    assert out["observer"] == "InotifyObserver"
    assert str(out["event"]).startswith(str(tmp_path))  # the observer really watches


def test_the_stand_in_loads_the_real_ctypes_util_when_asked() -> None:
    # Should a later watchdog call ctypes.util while it is imported, it gets the real one.
    out = fresh("""
from entrypoint.rotation.watch_observer import _CtypesUtilOnDemand
stand_in = sys.modules["ctypes.util"] = _CtypesUtilOnDemand("ctypes.util")
from ctypes.util import find_library
out["libc"] = find_library("c")
out["real"] = sys.modules["ctypes.util"] is not stand_in
out["same"] = sys.modules["ctypes.util"].find_library is find_library
""")
    assert out["real"] is True and out["same"] is True
    assert isinstance(out["libc"], str) and "libc" in out["libc"]
