"""Attacks on template sources by an app that can write them (review of the sec-templates
branch, item 1), performed for real as ``nobody`` against ``python -m entrypoint``.

The entrypoint is root and reads every template; the app runs as ``nobody``. When the app
could write a template (or a folder on its path), it rewrote it to read a Vault path it
was never given, or swapped it for a link to ``/proc/PPID/environ`` (the entrypoint's own
environment, ``VAULT_TOKEN`` included) and got it rendered into a file it can read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.attacks import NOBODY, as_nobody, reachable_folder
from tests.helpers.cli import clean_env, entrypoint_argv, run_cli, start_cli, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="an attack across users needs root")

TOKEN = "hvs.not-a-real-token-but-secret-7Qx"
ADMIN = "admin-only-password-9Kd2"
APP_DB = "app-db-password-4Hs1"


@pytest.fixture
def place() -> Iterator[Path]:
    """A folder others can traverse (pytest's tmp_path is root-only), removed at the end:
    secrets only root reads, a template folder, a destination folder the app reads."""
    with reachable_folder("ep-tpl-attack-") as top:
        lay_out(top)
        yield top


def lay_out(top: Path) -> None:
    secrets = top / "secrets"
    for path, value in (("secret/admin/root", ADMIN), ("secret/app/db", APP_DB)):
        (secrets / path).parent.mkdir(parents=True, exist_ok=True)
        (secrets / f"{path}.json").write_text(json.dumps({"password": value}))
    secrets.chmod(0o700)
    (top / "tpl").mkdir(mode=0o755)
    (top / "tpl/app.conf.j2").write_text("db={{ secret('secret/app/db').password }}\n")
    out = top / "out"
    out.mkdir(mode=0o750)
    os.chown(out, 0, NOBODY.pw_gid)


def config(place: Path) -> Path:
    path = place / "ep.toml"
    path.write_text(f'control_socket = ""\n[[template]]\nsource = "{place}/tpl/app.conf.j2"\n'
                    f'destination = "{place}/out/app.conf"\nperms = "0640"\n'
                    'group = "nogroup"\non_change = "none"\n')
    return path


def env(place: Path) -> dict[str, str]:
    return {"ENTRYPOINT_LOCAL_SECRETS": str(place / "secrets"), "VAULT_TOKEN": TOKEN}



def give_to_nobody(path: Path) -> None:
    os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)


@pytest.mark.parametrize("attack", ["rewrite", "link-to-environ"])
def test_a_template_the_app_can_write_is_refused_at_start(place: Path, attack: str) -> None:
    """The app owns the template's folder (as the review's repro had it): it rewrites the
    template to read secret/admin/root, or swaps it for a link to the reader's own
    /proc/self/environ. Before the fix root rendered the admin password, or VAULT_TOKEN,
    into a file the app reads; now the start stops at once (78), naming the folder."""
    folder = place / "tpl"
    give_to_nobody(folder)
    source = folder / "app.conf.j2"
    if attack == "rewrite":
        as_nobody("/usr/bin/python3", "-c", f"open({str(folder / 'new')!r}, 'w').write("
                  "\"admin={{ secret('secret/admin/root').password }}\\n\")")
        as_nobody("mv", "-f", str(folder / "new"), str(source))
    else:
        as_nobody("ln", "-sfn", "/proc/self/environ", str(folder / "new"))
        as_nobody("mv", "-fT", str(folder / "new"), str(source))
    proc = run_cli(["render", "--config", str(config(place))], env(place), timeout=30)
    assert proc.returncode == 78, proc.stderr
    assert f"template {source} is refused: {folder} can be written by a user other than " \
           "root and the entrypoint's (owner uid 65534, mode 0755)" in proc.stderr
    assert not (place / "out/app.conf").exists()
    assert TOKEN not in proc.stdout + proc.stderr and ADMIN not in proc.stdout + proc.stderr


def test_a_group_writable_template_and_proc_are_refused(place: Path) -> None:
    """Owned by root but writable by the app's group: refused too; and a template under
    /proc (its path as configured) is never read."""
    source = place / "tpl/app.conf.j2"
    os.chown(source, 0, NOBODY.pw_gid)
    source.chmod(0o664)
    proc = run_cli(["render", "--config", str(config(place))], env(place), timeout=30)
    assert proc.returncode == 78, proc.stderr
    assert f"{source} can be written by a user other than root" in proc.stderr
    proc = run_cli(["render", "--template", f"/proc/self/environ:{place}/out/app.conf"],
                   env(place), timeout=30)
    assert proc.returncode == 78, proc.stderr
    assert "is under /proc, /sys or /dev, which templates never read" in proc.stderr
    assert not (place / "out/app.conf").exists()
    assert TOKEN not in proc.stdout + proc.stderr


# The app: waits for its go, then rewrites the template, waits for a re-render, then
# swaps it for a link to its parent's (the entrypoint's) environment.
APP = """\
import os, sys, time
folder, go, done = sys.argv[1:4]
while not os.path.exists(go):
    time.sleep(0.05)
with open(os.path.join(folder, "new"), "w") as out:
    out.write("admin={{ secret('secret/admin/root').password }}\\n")
os.rename(os.path.join(folder, "new"), os.path.join(folder, "app.conf.j2"))
time.sleep(2)
os.symlink(f"/proc/{os.getppid()}/environ", os.path.join(folder, "link"))
os.rename(os.path.join(folder, "link"), os.path.join(folder, "app.conf.j2"))
open(done, "w").close()
time.sleep(300)
"""


def test_a_template_made_writable_after_start_is_not_rendered_again(place: Path) -> None:
    """The template's folder becomes the app's after a good start (a volume chowned by an
    init step, a mistake): the app, as nobody, rewrites the watched template and then
    swaps it for a link to /proc/PPID/environ. Before the fix each edit was rendered, the
    admin password and then VAULT_TOKEN landing in the app's file. Now each re-render is
    refused and logged, the file keeps its last good bytes and the app runs on."""
    folder = place / "tpl"
    go, done, log = place / "go", folder / "done", place / "ep.log"
    place.joinpath("app.py").write_text(APP)
    with log.open("wb") as sink:
        proc = start_cli(["--config", str(config(place)), "--user", "nobody", "--",
                          "/usr/bin/python3", str(place / "app.py"), str(folder), str(go),
                          str(done)], env(place), stdout=sink, stderr=subprocess.STDOUT)
    try:
        dest = place / "out/app.conf"
        wait_until(lambda: "child started" in log.read_text(), timeout=30, what="the app")
        assert dest.read_text() == f"db={APP_DB}\n"
        give_to_nobody(folder)
        go.touch()
        wait_until(done.exists, timeout=30, what="the app's two swaps")
        seen = len(log.read_text())
        wait_until(lambda: "is refused:" in log.read_text()[seen:], timeout=30,
                   what="a re-render after the link swap, refused")
        time.sleep(0.5)
        assert dest.read_text() == f"db={APP_DB}\n"
        assert proc.poll() is None
        text = log.read_text()
        assert f"{folder} can be written by a user other than root" in text
        assert TOKEN not in text and ADMIN not in text
    finally:
        print(log.read_text())  # shown when the test fails
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_legitimate_templates_still_render(place: Path) -> None:
    """Templates baked into the image (root's, 0644, in root's 0755 folders, /tmp's
    sticky 1777 above them) and a ConfigMap volume on a read-only mount (0777 folder,
    files reached through ..data links) render as before."""
    proc = run_cli(["render", "--config", str(config(place))], env(place), timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert (place / "out/app.conf").read_text() == f"db={APP_DB}\n"


# A ConfigMap volume as the kubelet lays it out: a 0777 folder (an emptyDir's), each file
# a link through ..data to a timestamped folder; mounted read-only into the container.
CONFIGMAP = """\
set -e
mount -t tmpfs -o mode=0777 tmpfs "$1"
mkdir "$1/..2026_12_02_01"
printf '%s\\n' "cm={{ secret('secret/app/db').password }}" > "$1/..2026_12_02_01/app.conf.j2"
ln -s ..2026_12_02_01 "$1/..data"
ln -s ..data/app.conf.j2 "$1/app.conf.j2"
[ "$2" = ro ] && mount -o remount,ro "$1"
shift 2
exec "$@"
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare for a mount")
@pytest.mark.parametrize("mount", ["ro", "rw"])
def test_a_configmap_volume_renders_when_read_only(place: Path, mount: str) -> None:
    """Mounted read-only (as the kubelet mounts ConfigMaps), its 0777 folder cannot be
    written by the app: the links are followed and the template renders. The same folder
    writable is the attack above, and is refused."""
    volume = place / "cm"
    volume.mkdir()
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", CONFIGMAP, "sh",
            str(volume), mount,
            *entrypoint_argv(["render", "--template",
                              f"{volume}/app.conf.j2:{place}/out/app.conf"])]
    proc = subprocess.run(argv, env=clean_env(env(place)), capture_output=True, text=True,
                          timeout=30)
    if mount == "ro":
        assert proc.returncode == 0, proc.stderr
        assert (place / "out/app.conf").read_text() == f"cm={APP_DB}\n"
    else:
        assert proc.returncode == 78, proc.stderr
        assert f"{volume} can be written by a user other than root" in proc.stderr


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_template_that_is_a_fifo_or_a_device_stops_the_start(place: Path, kind: str
                                                               ) -> None:
    """A template source that is a FIFO (no writer: an open hangs) or a link to /dev/zero
    (never ends): the supervisor's first look at the template, to tell an edit made
    before its watch started, opened and read it before the render refused it, so the
    start hung for good, or read until memory ran out. Now refused at once (78)."""
    source = place / "tpl" / "app.conf.j2"
    source.unlink()
    if kind == "fifo":
        os.mkfifo(source)
    else:
        source.symlink_to("/dev/zero")
    proc = run_cli(["--template", f"{source}:{place}/out/app.conf", "--", "true"],
                   {**env(place), "ENTRYPOINT_CONTROL_SOCKET": ""}, timeout=30)
    assert proc.returncode == 78, proc.stderr
    assert f"template {source}" in proc.stderr
