"""README's first command from a clean clone, on a Python that refuses global installs
(issue 18.3): examples/quickstart.sh makes and uses its own virtual environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path

import pytest

from tests.helpers.cli import REPO

SYSTEM_PYTHON = Path("/usr/bin/python3")


def _externally_managed(python: Path) -> bool:
    if not python.exists():
        return False
    stdlib = subprocess.run([str(python), "-c", "import sysconfig; "
                             "print(sysconfig.get_path('stdlib'))"],
                            capture_output=True, text=True, timeout=30)
    return stdlib.returncode == 0 and (Path(stdlib.stdout.strip()) / "EXTERNALLY-MANAGED"
                                       ).exists()


@pytest.mark.timeout(600)
@pytest.mark.skipif(shutil.which("git") is None, reason="git is needed to clone")
@pytest.mark.skipif(not _externally_managed(SYSTEM_PYTHON),
                    reason=f"{SYSTEM_PYTHON} is not an externally-managed Python (PEP 668)")
def test_readme_quickstart_from_a_clean_clone() -> None:
    assert sysconfig.get_path("stdlib")  # the test's own Python is not the one used
    # A private folder, as mktemp -d gives: the quickstart must not need a shared one.
    folder = Path(tempfile.mkdtemp(prefix="ep-quickstart-"))
    try:
        clone = folder / "entrypoint"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True,
                       timeout=120)
        readme = (clone / "README.md").read_text()
        assert "```sh\nbash examples/quickstart.sh\n```" in readme
        # Only the system's Python on PATH; pip's own settings (a wheelhouse, a mirror,
        # a CA bundle) pass through so that CI without the internet can install.
        env = {"PATH": "/usr/bin:/bin", "HOME": str(folder), "LANG": "C.UTF-8"}
        env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})
        result = subprocess.run(["bash", "examples/quickstart.sh"], cwd=clone, env=env,
                                capture_output=True, text=True, timeout=540)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "sample app pid=" in result.stdout
        assert "DB_PASSWORD    18 characters" in result.stdout
        assert "DB_PASSWORD=<redacted>" in result.stdout
        assert (clone / ".venv/bin/entrypoint").exists()
        # Nothing went into the system's Python.
        outside = subprocess.run([str(SYSTEM_PYTHON), "-c", "import entrypoint"], cwd="/",
                                 capture_output=True, text=True, timeout=30)
        assert outside.returncode != 0
        # A second run reuses the environment.
        again = subprocess.run(["bash", "examples/quickstart.sh"], cwd=clone, env=env,
                               capture_output=True, text=True, timeout=300)
        assert again.returncode == 0 and "creating a virtual environment" not in again.stdout
    finally:
        shutil.rmtree(folder)
