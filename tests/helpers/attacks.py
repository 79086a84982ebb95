"""What the attack tests share: a folder other users can reach, and acting as ``nobody``
(the app, another user than the entrypoint's root)."""

from __future__ import annotations

import contextlib
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

NOBODY = pwd.getpwnam("nobody")


@contextlib.contextmanager
def reachable_folder(prefix: str, mode: int = 0o755) -> Iterator[Path]:
    """A new folder others can traverse (``mode``; pytest's tmp_path is root-only),
    removed at the end whatever was made in it."""
    top = Path(tempfile.mkdtemp(prefix=prefix))
    top.chmod(mode)
    try:
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def as_nobody(*argv: str) -> None:
    """Run ``argv`` as nobody, as the app would; it must succeed."""
    subprocess.run(argv, user=NOBODY.pw_uid, group=NOBODY.pw_gid, check=True,
                   capture_output=True, timeout=10)
