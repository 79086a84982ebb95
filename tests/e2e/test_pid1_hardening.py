"""Attacks by the app on the entrypoint (issue 14, items 2, 7 and 11), each performed for
real against ``python -m entrypoint``: what the app could reach before, it cannot now.

The app is a small Python program run by the system interpreter, which any user can run,
so that it can also run as ``nobody``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.attacks import reachable_folder
from tests.helpers.cli import REPO, run_cli, start_cli, wait_until
from tests.helpers.pid1 import is_alive

SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")
needs_system_python = pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK),
                                         reason=f"needs {SYSTEM_PYTHON} for the app")

# The app: every descriptor it holds besides 0-2, what it points to, and what it can read.
LIST_FDS = """\
import json, os, sys
found = {}
for fd in range(3, 1024):
    try:
        os.fstat(fd)
    except OSError:
        continue
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        target = "?"
    try:
        data = os.pread(fd, 100, 0).decode(errors="replace")
    except OSError as exc:
        data = "unreadable: " + exc.strerror
    found[fd] = [target, data]
print(json.dumps(found))
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder any user can read (pytest's tmp_path is root-only)."""
    with reachable_folder("ep-hard-") as directory:
        yield directory


def root_only_file(tmp_path: Path, text: str) -> int:
    """An open descriptor, without close-on-exec, on a file only root may read."""
    path = tmp_path / "root-only.txt"
    path.write_text(text)
    path.chmod(0o600)
    fd = os.open(path, os.O_RDONLY)
    os.set_inheritable(fd, True)
    return fd


def app_fds(args: list[str], env: dict[str, str], fd: int) -> dict[str, list[str]]:
    """Run the entrypoint as a caller that left ``fd`` open; the app's descriptors."""
    done = run_cli(["--control-socket", "", *args, "--", SYSTEM_PYTHON, "-c", LIST_FDS], env,
                   cwd=REPO, pass_fds=(fd,))
    assert done.returncode == 0, done.stderr
    found: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


@needs_root
@needs_system_python
@pytest.mark.parametrize("mode", [[], ["--exec"]], ids=["supervise", "exec"])
def test_app_gets_no_descriptor_its_caller_left_open(tmp_path: Path, mode: list[str]) -> None:
    """issue 14.2: a descriptor left open by whoever started the entrypoint (here on a
    root-only file) was readable by the app running as nobody. It is closed now, in both
    modes, unless the user passes it on purpose with pass_fds."""
    fd = root_only_file(tmp_path, "root-only-Hx7 contents")
    try:
        found = app_fds([*mode, "--user", str(NOBODY)], {}, fd)
        assert found == {}, f"the app inherited {found}"
        passed = app_fds([*mode, "--user", str(NOBODY), "--pass-fds", str(fd)], {}, fd)
        assert passed[str(fd)][1] == "root-only-Hx7 contents"  # asked for: handed over
    finally:
        os.close(fd)


@needs_root
@needs_system_python
def test_app_gets_no_inotify_descriptor_of_the_entrypoint(tmp_path: Path) -> None:
    """issue 14.2: with local secrets watched, the app running as nobody got the
    entrypoint's inotify descriptor (it could read names created in a root-only folder and
    remove the watch). The app's descriptors are 0, 1 and 2 only."""
    secrets = tmp_path / "secrets" / "kv"
    secrets.mkdir(parents=True)
    (secrets / "app.json").write_text(json.dumps({"password": "pw-Inot1fy-q9"}))
    env = {"ENTRYPOINT_LOCAL_SECRETS": str(tmp_path / "secrets"),
           "APP_PASSWORD": "vault:kv/app#password"}
    fd = root_only_file(tmp_path, "unused")
    try:
        found = app_fds(["--user", str(NOBODY)], env, fd)
    finally:
        os.close(fd)
    assert found == {}, f"the app inherited {found}"


# The app: the entrypoint's environment and memory, read, and a ptrace attach (each
# what the attempt gave), as JSON. Were the attach to succeed, the app detaches at once.
STEAL = """\
import ctypes, json, os
ppid = os.getppid()
found = {}
try:
    found["environ"] = open(f"/proc/{ppid}/environ", "rb").read().decode(errors="replace")
except OSError as exc:
    found["environ"] = "refused " + exc.strerror
try:
    with open(f"/proc/{ppid}/mem", "rb") as mem:
        try:
            start = int(open(f"/proc/{ppid}/maps").readline().split("-")[0], 16)
            mem.seek(start)
            found["mem"] = "read %d bytes" % len(mem.read(64))
        except (OSError, ValueError) as exc:
            found["mem"] = "opened, then " + str(exc)
except OSError as exc:
    found["mem"] = "refused " + exc.strerror
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
if libc.ptrace(16, ppid, None, None) == 0:  # PTRACE_ATTACH
    os.waitpid(ppid, 0x40000000)  # __WALL: the stop of the attach
    libc.ptrace(17, ppid, None, None)  # PTRACE_DETACH
    found["ptrace"] = "attached"
else:
    found["ptrace"] = "refused " + os.strerror(ctypes.get_errno())
print(json.dumps(found))
"""


def _refused_everything(done: subprocess.CompletedProcess[str], token: str) -> None:
    assert done.returncode == 0, done.stderr
    assert token not in done.stdout
    found = json.loads(done.stdout)
    assert found == {"environ": "refused Permission denied", "mem": "refused Permission denied",
                     "ptrace": "refused Operation not permitted"}


@needs_root
@needs_system_python
def test_same_uid_app_cannot_read_the_entrypoints_environment(shared_dir: Path) -> None:
    """issue 14.7: an app running with the entrypoint's own uid read /proc/PPID/environ,
    which holds the VAULT_TOKEN the entrypoint was started with, and could open
    /proc/PPID/mem or ptrace it. The entrypoint is not dumpable now: all three are
    refused. Both run as nobody, as an unprivileged image would.
    """
    # nobody runs the entrypoint: from a copy in a folder it can read, since the checkout
    # may sit in a folder other users cannot (a fresh `mktemp -d`).
    shutil.copytree(REPO / "entrypoint", shared_dir / "entrypoint",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for path in [shared_dir / "entrypoint", *(shared_dir / "entrypoint").rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    token = "s.Dumpable-Token-Zq81"
    done = run_cli(["--control-socket", "", "--", SYSTEM_PYTHON, "-c", STEAL],
                   {"VAULT_TOKEN": token, "HOME": str(shared_dir)}, cwd=shared_dir,
                   python=SYSTEM_PYTHON, user=NOBODY, group=NOBODY, extra_groups=[])
    _refused_everything(done, token)


@needs_root
@needs_system_python
def test_app_of_another_uid_cannot_read_or_trace_the_entrypoint() -> None:
    """The same three attempts by an app run as nobody (``--user``) on an entrypoint run
    as root: refused (another uid, and not dumpable)."""
    token = "s.Other-Uid-Token-Kw37"
    done = run_cli(["--control-socket", "", "--user", str(NOBODY), "--",
                    SYSTEM_PYTHON, "-c", STEAL], {"VAULT_TOKEN": token}, cwd=REPO)
    _refused_everything(done, token)


@needs_root
@needs_system_python
def test_no_new_privs_keeps_a_setuid_program_from_gaining_root(shared_dir: Path) -> None:
    """issue 14.7: an app running as nobody that runs a setuid-root program becomes root
    (here a copy of python that prints its effective uid). With no_new_privs it stays
    nobody."""
    setuid_python = shared_dir / "python-suid"
    shutil.copy2(os.path.realpath(SYSTEM_PYTHON), setuid_python)
    setuid_python.chmod(0o4755)
    code = "import os; print(os.geteuid())"

    def euid(extra: list[str]) -> str:
        done = run_cli(["--control-socket", "", "--user", str(NOBODY),
                        *extra, "--", str(setuid_python), "-c", code], cwd=REPO)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    if euid([]) != "0":
        pytest.skip(f"setuid does not take effect in {shared_dir} (nosuid mount?)")
    assert euid(["--no-new-privileges"]) == str(NOBODY)
    assert euid(["--exec", "--no-new-privileges"]) == str(NOBODY)


def test_approle_secret_id_on_the_command_line_is_warned_about(tmp_path: Path) -> None:
    """issue 14.7: a secret_id given as a flag is in ps and /proc/PID/cmdline for anyone
    on the host to read, as this test does. The entrypoint says so, without the value."""
    secret_id = "sid-Cmdline-Visible-4k2"
    # Nothing answers on port 9: it keeps retrying at start, long enough to be looked at.
    env = {"VAULT_ADDR": "http://127.0.0.1:9", "ENTRYPOINT_STARTUP_TIMEOUT": "60s",
           "ENTRYPOINT_VAULT_APPROLE_ROLE_ID": "role", "APP_SECRET": "vault:secret/app#value"}
    log = tmp_path / "ep.log"
    with log.open("w") as err:
        proc = start_cli(["--control-socket", "", "--vault-auth",
                          "approle", "--vault-approle-secret-id", secret_id, "--",
                          "true"], env, cwd=REPO, stderr=err)
    try:
        wait_until(lambda: "retry" in log.read_text(), timeout=30, what="a retry at start")
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert secret_id.encode() in cmdline  # the attack: anybody can read it
        proc.terminate()
        proc.wait(timeout=30)
        stderr = log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "--vault-approle-secret-id on the command line is visible" in stderr
    assert "ENTRYPOINT_VAULT_APPROLE_SECRET_ID" in stderr
    assert secret_id not in stderr


APP_WITH_PID = ("import os, sys, time\nopen(sys.argv[1], 'w').write(str(os.getpid()))\n"
                "time.sleep(300)\n")


def started_app(args: list[str], pid_file: Path) -> tuple[subprocess.Popen[bytes], int]:
    proc = start_cli(["--control-socket", "", *args, "--",
                      sys.executable, "-c", APP_WITH_PID, str(pid_file)],
                     cwd=REPO, stderr=subprocess.DEVNULL)
    wait_until(lambda: pid_file.exists() and pid_file.read_text(), timeout=30,
               what="the app's pid")
    return proc, int(pid_file.read_text())


@pytest.mark.parametrize("mode", [[], ["--exec"]], ids=["supervise", "exec"])
def test_parent_death_signal_ends_the_app_with_the_entrypoint(tmp_path: Path,
                                                              mode: list[str]) -> None:
    """issue 14.11: an entrypoint that is not PID 1 and gets SIGKILLed left its app
    running, on credentials nobody renews. With parent_death_signal the app gets that
    signal as soon as its parent dies: the entrypoint (supervise) or, in exec mode where
    the app took the entrypoint's place, the process that started it."""
    if mode:
        # exec: the app is the entrypoint's process, whose parent is this shell (the
        # trailing ':' keeps sh from exec'ing the command in its own place).
        pid_file = tmp_path / "pid"
        parent = start_cli(
            ["--control-socket", "", "--exec",
             "--parent-death-signal", "TERM", "--", sys.executable, "-c", APP_WITH_PID,
             str(pid_file)], prefix=["sh", "-c", '"$@"; :', "sh"], cwd=REPO,
            stderr=subprocess.DEVNULL)
        wait_until(lambda: pid_file.exists() and pid_file.read_text(), timeout=30,
                   what="the app's pid")
        app = int(pid_file.read_text())
    else:
        parent, app = started_app(["--parent-death-signal", "TERM"], tmp_path / "pid")
    try:
        parent.kill()
        parent.wait()
        wait_until(lambda: not is_alive(app), timeout=10, what="the app to end with its parent")
    finally:
        if is_alive(app):
            os.kill(app, signal.SIGKILL)


def test_without_parent_death_signal_the_app_outlives_a_killed_entrypoint(
        tmp_path: Path) -> None:
    """What the option is for: by default the app is orphaned (and this test ends it)."""
    proc, app = started_app([], tmp_path / "pid")
    try:
        proc.kill()
        proc.wait()
        assert is_alive(app)
    finally:
        if is_alive(app):
            os.kill(app, signal.SIGKILL)
        wait_until(lambda: not is_alive(app), timeout=10, what="the orphan to end")


@needs_root
@needs_system_python
def test_parent_death_signal_with_another_user(shared_dir: Path) -> None:
    """The app switched to nobody still gets its parent-death signal (the kernel clears it
    on a change of uid, so it is set after the switch), and the entrypoint's interpreter
    need not be one nobody may run (here it may be a pyenv under /root)."""
    shared_dir.chmod(0o777)
    pid_file = shared_dir / "pid"
    code = APP_WITH_PID.replace("str(os.getpid())", "f'{os.getpid()} {os.getuid()}'")
    proc = start_cli(["--control-socket", "", "--user", str(NOBODY),
                      "--parent-death-signal", "TERM", "--", SYSTEM_PYTHON, "-c", code,
                      str(pid_file)], cwd=REPO, stderr=subprocess.DEVNULL)
    wait_until(lambda: pid_file.exists() and pid_file.read_text(), timeout=30,
               what="the app's pid")
    app, uid = (int(word) for word in pid_file.read_text().split())
    try:
        assert uid == NOBODY
        proc.kill()
        proc.wait()
        wait_until(lambda: not is_alive(app), timeout=10, what="the app to end with its parent")
    finally:
        if is_alive(app):
            os.kill(app, signal.SIGKILL)
