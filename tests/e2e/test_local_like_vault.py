"""The local secrets directory answers as Vault would (issue 18.4): what works locally
works in production, and what Vault refuses is refused here too."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from entrypoint.cli import main
from entrypoint.errors import PermissionDenied, SecretNotFound
from entrypoint.sources.local.consul import LocalConsulSource
from entrypoint.sources.local.folder import LocalSource
from tests.helpers.cli import run_cli

NOBODY = 65534


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "secret/app").mkdir(parents=True)
    (tmp_path / "secret/app/db.json").write_text(json.dumps({"password": "current-pw-0123"}))
    return tmp_path


def test_data_segment_is_refused_as_vault_refuses_it_on_kv2(root: Path) -> None:
    with pytest.raises(SecretNotFound, match="a path with data/ after the mount is refused") \
            as refused:
        LocalSource(root).fetch("secret/data/app/db")
    assert refused.value.hint is not None and "secret/app/db" in refused.value.hint
    result = run_cli(["render"], {"ENTRYPOINT_LOCAL_SECRETS": str(root),
                                  "DB": "vault:secret/data/app/db#password"})
    assert result.returncode == 78 and "write the path without data/" in result.stderr


def test_vaults_api_layout_still_answers_the_plain_path(tmp_path: Path) -> None:
    (tmp_path / "secret/data/app").mkdir(parents=True)
    (tmp_path / "secret/data/app/db.json").write_text('{"k": "v-0123456789"}')
    assert LocalSource(tmp_path).fetch("secret/app/db").data["k"].reveal() == "v-0123456789"


def test_a_version_reads_only_its_own_file(root: Path) -> None:
    source = LocalSource(root)
    with pytest.raises(SecretNotFound, match="version 7 of secret secret/app/db not found"):
        source.fetch("secret/app/db", 7)
    (root / "secret/app/db@7.json").write_text(json.dumps({"password": "v7-pw-0123"}))
    pinned = source.fetch("secret/app/db", 7)
    assert pinned.version == 7 and pinned.data["password"].reveal() == "v7-pw-0123"
    current = source.fetch("secret/app/db")
    assert current.version is None  # no version is made up for the current file
    assert current.data["password"].reveal() == "current-pw-0123"


def test_a_missing_version_fails_render_and_is_never_logged_as_served(root: Path) -> None:
    result = run_cli(["render"], {"ENTRYPOINT_LOCAL_SECRETS": str(root),
                                  "DB": "vault:secret/app/db#password?version=7"})
    assert result.returncode == 78
    assert "version 7 of secret secret/app/db not found" in result.stderr
    assert " v7" not in result.stderr


@contextlib.contextmanager
def _shared_folder() -> Iterator[Path]:
    """A folder another user can reach (pytest's tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="ep-local-"))
    try:
        folder.chmod(0o755)
        yield folder
    finally:
        shutil.rmtree(folder)


def _as_nobody(work: Callable[[], int]) -> int:
    """Run ``work`` in a forked child as nobody: the kernel, not a mock, refuses.
    Everything it needs is imported by the caller first (nobody cannot read root's
    Python). -> its result, as the child's exit status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 70
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = work()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _refused_as_nobody(read: Callable[[], object], words: str) -> int:
    """``read`` as nobody: 77 when it is refused with ``words`` in the message, 1 when
    refused otherwise, 0 when not refused."""
    def attempt() -> int:
        try:
            read()
        except PermissionDenied as exc:
            return 77 if words in exc.message else 1
        return 0

    return _as_nobody(attempt)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_unreadable_folder_is_77_naming_it(capfd: pytest.CaptureFixture[str]) -> None:
    with _shared_folder() as folder:
        (folder / "secret/app").mkdir(parents=True)
        (folder / "secret/app/db.json").write_text('{"password": "pw-0123456789"}')
        (folder / "secret/app").chmod(0o700)
        (folder / "secret/app/db.json").chmod(0o644)
        (folder / "consul/app").mkdir(parents=True)
        (folder / "consul/app/flag").write_text("on\n")
        (folder / "consul/app").chmod(0o700)
        env = {"ENTRYPOINT_LOCAL_SECRETS": str(folder), "DB": "vault:secret/app/db#password",
               "PATH": os.defpath}
        # The same command as root first: every module it needs is then loaded.
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["render"], env) == 0

            assert _refused_as_nobody(lambda: LocalSource(folder).fetch("secret/app/db"),
                                      f"folder {folder}/secret/app is") == 77
            assert _refused_as_nobody(lambda: LocalConsulSource(folder).fetch("app/flag"),
                                      "consul key file") == 77
            capfd.readouterr()
            code = _as_nobody(lambda: main(["render"], env))
    stderr = capfd.readouterr().err
    assert code == 77, stderr
    assert f"local secrets directory: folder {folder}/secret/app is not readable" in stderr
    assert "Traceback" not in stderr and "PermissionError" not in stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_an_unreadable_folder_beneath_a_bulk_folder_is_77() -> None:
    """secrets = ["secret/app/"] with a subfolder closed to the entrypoint's user (moved
    here from the unit layer, where it could only skip when run as root)."""
    with _shared_folder() as folder:
        (folder / "secret/app/locked").mkdir(parents=True)
        (folder / "secret/app/db.json").write_text('{"k": "v"}')
        (folder / "secret/app/locked/x.json").write_text('{"k": "v"}')
        (folder / "secret/app/locked").chmod(0o700)
        # As root first: every module the read needs is then loaded (nobody cannot read
        # a checkout in a folder closed to others, as CI's is).
        assert LocalSource(folder).fetch("secret/app/").parts

        assert _refused_as_nobody(lambda: LocalSource(folder).fetch("secret/app/"),
                                  "locked is not readable") == 77

