"""Attacks on ``ready_file`` by an app that can write its folder (review of the
sec-templates branch, item 2), performed for real by a process running as ``nobody``.

The entrypoint (root) writes the ready file as a temp file in its folder, then renames it
into place. It used to ``chmod`` the temp file *by name* after writing it: the app,
watching the folder, swapped the temp file for a link to a root-only file, and root made
that file ``0644`` (the review's repro, /tmp/review-sec/rd, won that race in C).

Here the race is made certain rather than won by luck: the entrypoint's real
``ReadyFile`` runs as root in a child process whose writes to the temp file are slowed
down (a second after the write), so the app's swap always lands between the write and
what follows it. Nothing else in the code under test is changed.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.attacks import NOBODY, reachable_folder

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="an attack across users needs root")

SYSTEM_PYTHON = "/usr/bin/python3"
ROOT_ONLY = "root-only: line one\n"

# The app: waits for root's temp file and swaps it for a link to the victim.
SWAPPER = """\
import os, sys, time
folder, victim = sys.argv[1:3]
end = time.time() + 20
while time.time() < end:
    for name in os.listdir(folder):
        if name.startswith(".ready-"):
            os.symlink(victim, os.path.join(folder, ".mine"))
            os.rename(os.path.join(folder, ".mine"), os.path.join(folder, name))
            sys.exit(0)
    time.sleep(0.005)
sys.exit(1)
"""


@pytest.fixture
def place() -> Iterator[Path]:
    """A folder others can traverse (pytest's tmp_path is root-only), removed at the end:
    ``app`` the app owns, ``vault/shadow`` only root reads."""
    with reachable_folder("ep-ready-attack-") as top:
        (top / "app").mkdir()
        os.chown(top / "app", NOBODY.pw_uid, NOBODY.pw_gid)
        (top / "vault").mkdir(mode=0o700)
        (top / "vault/shadow").write_text(ROOT_ONLY)
        (top / "vault/shadow").chmod(0o600)
        yield top


def make_ready(ready: Path, *, slow: bool) -> subprocess.CompletedProcess[str]:
    """``ReadyFile(ready).set(True)`` as root in a child; with ``slow``, each write to a
    file opened by ``os.fdopen`` is followed by a one-second pause."""
    code = f"""
import logging, os, sys, time
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from entrypoint.ops.readiness import ReadyFile
from entrypoint.ops.state import Observer
if {slow!r}:
    real = os.fdopen
    class Slow:
        def __init__(self, f): self.f = f
        def __enter__(self): return self
        def __exit__(self, *a): return self.f.__exit__(*a)
        def write(self, text):
            n = self.f.write(text)
            time.sleep(1)
            return n
        def __getattr__(self, name): return getattr(self.f, name)
    os.fdopen = lambda *a, **k: Slow(real(*a, **k))
logging.basicConfig(level=logging.WARNING)
ReadyFile(Path({str(ready)!r}), Observer(), logging.getLogger("entrypoint")).set(True)
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)


def test_the_app_cannot_have_root_chmod_a_file_through_the_ready_file(place: Path) -> None:
    """The app swaps root's temp file for a link to a root-only file while root writes
    it. Before the fix root's chmod by name followed the link: the root-only file became
    0644. Now the mode is set on root's own descriptor: the root-only file keeps 0600."""
    victim = place / "vault/shadow"
    swapper = subprocess.Popen([SYSTEM_PYTHON, "-c", SWAPPER, str(place / "app"),
                                str(victim)], user=NOBODY.pw_uid, group=NOBODY.pw_gid)
    try:
        done = make_ready(place / "app/ready", slow=True)
        assert swapper.wait(timeout=30) == 0, "the app never saw the temp file"
    finally:
        if swapper.poll() is None:
            swapper.kill()
            swapper.wait()
    assert done.returncode == 0, done.stderr
    st = victim.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
    assert victim.read_text() == ROOT_ONLY


def test_a_ready_file_folder_swapped_for_a_link_is_not_followed(place: Path) -> None:
    """The ready file's folder, in the app's folder, is swapped for a link to a root-only
    folder: root created (and at the next stop removed) a file named as the ready file
    there. Now the link is refused and said so; nothing is written there."""
    subprocess.run(["ln", "-s", str(place / "vault"), str(place / "app/sub")],
                   user=NOBODY.pw_uid, group=NOBODY.pw_gid, check=True, timeout=10)
    done = make_ready(place / "app/sub/ready", slow=False)
    assert done.returncode == 0, done.stderr
    assert "cannot create the ready file" in done.stderr
    assert "is a symbolic link in a folder others can write; refusing to follow it" \
        in done.stderr
    assert sorted(p.name for p in (place / "vault").iterdir()) == ["shadow"]


def test_the_ready_file_is_still_made_0644_in_the_apps_folder(place: Path) -> None:
    ready = place / "app/ready"
    done = make_ready(ready, slow=False)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(ready.stat().st_mode) == 0o644
    assert ready.read_text().strip().isdigit()
    assert not list((place / "app").glob(".ready-*"))
