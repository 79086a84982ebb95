"""user = USER[:GROUP]: the child runs with that uid, gid and groups; the supervisor stays
root; a bad name is a config error (78) naming it. Uses a throwaway system user."""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from entrypoint.errors import ConfigError
from entrypoint.process.identity import resolve_user
from tests.helpers.cli import REPO, clean_env
from tests.helpers.pid1 import PRINT_SIGNALS, Supervised

SYSTEM_PYTHON = "/usr/bin/python3"  # readable by any user, unlike a pyenv under /root

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root"),
    pytest.mark.skipif(not shutil.which("useradd"), reason="needs useradd/groupadd"),
]


@dataclass
class Throwaway:
    name: str
    uid: int
    gid: int
    extra: str  # a supplementary group it belongs to
    extra_gid: int
    other: str  # a group it does not belong to
    other_gid: int


@pytest.fixture(scope="module")
def throwaway() -> Iterator[Throwaway]:
    tag = secrets.token_hex(3)
    name, extra, other = f"ep-u-{tag}", f"ep-x-{tag}", f"ep-o-{tag}"
    subprocess.run(["groupadd", "--system", extra], check=True)
    subprocess.run(["groupadd", "--system", other], check=True)
    subprocess.run(["useradd", "--system", "--no-create-home", "--user-group",
                    "--groups", extra, name], check=True)
    try:
        entry = pwd.getpwnam(name)
        yield Throwaway(name, entry.pw_uid, entry.pw_gid, extra, grp.getgrnam(extra).gr_gid,
                        other, grp.getgrnam(other).gr_gid)
    finally:
        subprocess.run(["userdel", name], check=False)
        subprocess.run(["groupdel", extra], check=False)
        subprocess.run(["groupdel", other], check=False)


@pytest.fixture
def shared_out() -> Iterator[Path]:
    """A file the unprivileged child can write (pytest's tmp_path is root-only), beside a
    copy of the child's script: the checkout itself may be in a folder other users cannot
    read (a fresh ``mktemp -d``), and the child runs as one of them."""
    directory = Path(tempfile.mkdtemp(prefix="ep-pid1-"))
    directory.chmod(0o777)
    script = directory / "print_signals.py"
    shutil.copyfile(PRINT_SIGNALS[1], script)
    script.chmod(0o644)
    yield directory / "out.txt"
    shutil.rmtree(directory, ignore_errors=True)


needs_system_python = pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK),
                                         reason=f"needs {SYSTEM_PYTHON} for the child")


def run_as(tmp_path: Path, out: Path, user: str) -> tuple[dict[str, str], str]:
    argv = [SYSTEM_PYTHON, str(out.parent / "print_signals.py"), "--out", str(out)]
    with Supervised(tmp_path, ["--user", user], out=out, command=argv) as run:
        child = run.ready()
        status = Path(f"/proc/{run.proc.pid}/status").read_text().splitlines()
        supervisor_uid = next(ln for ln in status if ln.startswith("Uid:")).split()[1]
        assert supervisor_uid == "0"  # the supervisor stays root
        run.kill(signal.SIGTERM)
        assert run.wait() == 0
    return child, run.log()


@needs_system_python
def test_user_name_brings_its_groups(tmp_path: Path, shared_out: Path,
                                     throwaway: Throwaway) -> None:
    child, log = run_as(tmp_path, shared_out, throwaway.name)
    assert (child["uid"], child["gid"]) == (str(throwaway.uid), str(throwaway.gid))
    assert set(child["groups"].split(",")) == {str(throwaway.gid), str(throwaway.extra_gid)}
    assert child["sigblk"] == "0000000000000000"
    assert f"user={throwaway.name} (uid={throwaway.uid} gid={throwaway.gid})" in log


@needs_system_python
def test_user_and_group_give_that_group_only(tmp_path: Path, shared_out: Path,
                                             throwaway: Throwaway) -> None:
    child, _ = run_as(tmp_path, shared_out, f"{throwaway.name}:{throwaway.other}")
    assert (child["uid"], child["gid"]) == (str(throwaway.uid), str(throwaway.other_gid))
    assert child["groups"] == str(throwaway.other_gid)


@needs_system_python
def test_numeric_user_without_passwd_entry(tmp_path: Path, shared_out: Path) -> None:
    """An arbitrary uid runs with the same number as gid, never with root's group."""
    uid = 54321
    assert not any(e.pw_uid == uid for e in pwd.getpwall())
    child, _ = run_as(tmp_path, shared_out, str(uid))
    assert (child["uid"], child["gid"], child["groups"]) == (str(uid), str(uid), str(uid))


def test_user_path_gives_a_clean_signal_slate(tmp_path: Path, throwaway: Throwaway) -> None:
    """The Popen path (needed to switch user) also starts the child with nothing blocked
    and nothing ignored, even when the supervisor's parent ignored SIGHUP."""
    prefix = ["python", "-c", "import os, signal, sys; "
              "signal.signal(signal.SIGHUP, signal.SIG_IGN); "
              "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}); "
              "os.execvp(sys.argv[1], sys.argv[1:])"]
    with Supervised(tmp_path, ["--user", throwaway.name], command=["cat", "/proc/self/status"],
                    prefix=prefix) as run:
        assert run.wait() == 0
    status = dict(line.split(":\t", 1) for line in run.stdout.read_text().splitlines()
                  if ":\t" in line)
    assert int(status["SigBlk"], 16) == 0
    assert int(status["SigIgn"], 16) == 0
    assert status["Uid"].split()[0] == str(throwaway.uid)


@pytest.mark.parametrize(("spec", "named"), [
    ("no-such-user-zz", "no user named 'no-such-user-zz'"),
    ("root:no-such-group-zz", "no group named 'no-such-group-zz'"),
    ("root:", "expected USER or USER:GROUP"),
    ("a:b:c", "expected USER or USER:GROUP"),
])
def test_bad_user_or_group_is_a_config_error(tmp_path: Path, spec: str, named: str) -> None:
    """Exit 78 before anything is resolved or started, naming what was not found."""
    with Supervised(tmp_path, ["--user", spec]) as run:
        assert run.wait() == 78
    assert named in run.log()
    assert not run.lines()
    with pytest.raises(ConfigError, match=named):
        resolve_user(spec)


def test_become_switches_this_process(throwaway: Throwaway) -> None:
    """Exec mode's switch: groups, gid, then uid, for good."""
    code = ("import os; from entrypoint.process.identity import become, resolve_user; "
            f"become(resolve_user({throwaway.name!r})); "
            "print(os.getuid(), os.getgid(), sorted(os.getgroups()))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=clean_env(), cwd=REPO, check=True)
    groups = sorted([throwaway.gid, throwaway.extra_gid])
    assert done.stdout.split(" ", 2) == [str(throwaway.uid), str(throwaway.gid), f"{groups}\n"]


def test_resolve_user_root() -> None:
    assert resolve_user("root").uid == 0
    assert resolve_user("0:0").groups == (0,)
