"""Attacks on rendered files by an app that can write in a destination's folder.

The entrypoint is root; the app runs as another user (here ``nobody``) that owns the
folder the templates render into. Each test has ``nobody`` plant something (with real
``ln``/``mkfifo`` run as that user) and checks that root neither follows it nor hangs on
it, and that root-only files keep their mode, owner and bytes (issue 14, item 1).
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.attacks import as_nobody, reachable_folder
from tests.helpers.cli import run_cli

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="an attack across users needs root")

ROOT_ONLY = "root-only: line one\nline two\n"


@pytest.fixture
def place() -> Iterator[Path]:
    with reachable_folder("ep-attack-") as top:
        yield top



def app_folder(place: Path) -> Path:
    """The folder the app can write: owned by nobody, as /run/app is by the app."""
    folder = place / "app"
    folder.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    return folder


def root_only_file(place: Path) -> Path:
    vault = place / "vault"
    vault.mkdir(mode=0o700)
    target = vault / "shadow"
    target.write_text(ROOT_ONLY)
    target.chmod(0o600)
    return target


def template(place: Path, text: str) -> Path:
    src = place / "t.j2"
    src.write_text(text)
    return src


def test_link_at_the_destination_is_not_followed_for_mode_or_owner(place: Path) -> None:
    """The app plants dest -> a root-only file holding exactly what the template renders:
    before the fix the "unchanged" file's mode and owner were corrected *through* the link,
    making the root-only file nobody's and 0644."""
    target = root_only_file(place)
    dest = app_folder(place) / "app.conf"
    as_nobody("ln", "-s", str(target), str(dest))
    src = template(place, ROOT_ONLY)
    config = place / "app.toml"
    config.write_text(f'[[template]]\nsource = "{src}"\ndestination = "{dest}"\n'
                      'perms = "0644"\nuser = "nobody"\n')
    proc = run_cli(["render", "--config", str(config)], timeout=30)
    assert proc.returncode == 73, proc.stderr
    assert f"cannot write {dest}: it is a symbolic link" in proc.stderr
    st = target.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
    assert target.read_text() == ROOT_ONLY
    assert dest.is_symlink()


def test_folder_swapped_for_a_link_is_not_followed(place: Path) -> None:
    """The app turns a folder of the destination's path into a link to a root-only folder:
    before the fix root wrote the rendered file inside it."""
    root_only = root_only_file(place).parent
    app = app_folder(place)
    as_nobody("ln", "-s", str(root_only), str(app / "conf"))
    src = template(place, "rendered\n")
    proc = run_cli(["render", "--template", f"{src}:{app}/conf/app.conf"], timeout=30)
    assert proc.returncode == 73, proc.stderr
    assert "is a symbolic link in a folder others can write; refusing to follow it" in proc.stderr
    assert sorted(p.name for p in root_only.iterdir()) == ["shadow"]


def test_link_in_a_folder_only_root_can_write_is_followed(place: Path) -> None:
    """A link root made (as /var/run -> /run) still works."""
    real = place / "real"
    real.mkdir(mode=0o755)
    (place / "alias").symlink_to(real)
    src = template(place, "rendered\n")
    proc = run_cli(["render", "--template", f"{src}:{place}/alias/sub/app.conf"], timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert (real / "sub/app.conf").read_text() == "rendered\n"


def test_fifo_at_the_destination_is_refused_without_hanging(place: Path) -> None:
    """Before the fix, reading the destination to compare it blocked on the FIFO forever."""
    dest = app_folder(place) / "app.conf"
    as_nobody("mkfifo", str(dest))
    src = template(place, "rendered\n")
    proc = run_cli(["render", "--template", f"{src}:{dest}"], timeout=30)
    assert proc.returncode == 73, proc.stderr
    assert f"cannot write {dest}: it is a FIFO, not a regular file" in proc.stderr
    assert stat.S_ISFIFO(dest.lstat().st_mode)


def test_folders_are_created_0750_whatever_the_umask(place: Path) -> None:
    src = template(place, "rendered\n")
    dest = place / "new/deeper/app.conf"
    proc = run_cli(["render", "--template", f"{src}:{dest}"], timeout=30,
                   preexec_fn=lambda: os.umask(0))
    assert proc.returncode == 0, proc.stderr
    for folder in (place / "new", place / "new/deeper"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o750, folder
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600



def test_reads_never_follow_a_link_the_app_planted(place: Path) -> None:
    """A ``file:`` reference (and ``file()``, which reads through the same source after
    checking the resolved path) into a folder the app can write: the app swaps the file
    for a link to a root-only file. Before the fix root read the root-only file into the
    app's environment; now the read itself refuses the link, so no swap between check
    and read can work. A FIFO there is refused, not hung on."""
    from entrypoint.errors import ConfigError
    from entrypoint.sources.file.source import FileSource

    target = root_only_file(place)
    app = app_folder(place)
    as_nobody("ln", "-s", str(target), str(app / "ca.pem"))
    proc = run_cli(["render", "--reveal"], {"CA": f"file:{app}/ca.pem"}, timeout=30)
    assert proc.returncode == 78, proc.stderr
    assert "is a symbolic link in a folder others can write; refusing to follow it" in proc.stderr
    assert "root-only" not in proc.stdout + proc.stderr
    with pytest.raises(ConfigError, match="refusing to follow it"):
        FileSource().fetch(str(app / "ca.pem"))  # the read file() makes after its check
    as_nobody("mkfifo", str(app / "fifo"))
    proc = run_cli(["render"], {"CA": f"file:{app}/fifo"}, timeout=30)
    assert proc.returncode == 78, proc.stderr
    assert "is not a regular file" in proc.stderr


# The app's side of the race: swaps NAME, in a loop, between a regular file holding GOOD
# and a link to TARGET, each an atomic rename (the path always exists), until STOP exists.
SWAPPER = """\
import os, sys
name, target, stop = sys.argv[1:4]
folder = os.path.dirname(name)
regular, link = os.path.join(folder, ".regular"), os.path.join(folder, ".link")
while not os.path.exists(stop):
    for _ in range(200):
        with open(regular, "w") as out:
            out.write("app's own ca\\n")
        os.rename(regular, name)
        os.symlink(target, link)
        os.rename(link, name)
"""


def test_file_in_a_template_races_an_app_swapping_a_link(place: Path) -> None:
    """The app swaps the file a template's ``file()`` names between a regular file and a
    link to a root-only file, as fast as it can, while root renders the template, again
    and again (a bounded number of renders). ``file()`` checks the resolved path, then
    reads: with a read that followed links, a swap between the two put the root-only file
    in the output. Each render must either refuse (78) or write the app's own file; the
    root-only text is never in the output, the destination or a message."""
    target = root_only_file(place)
    app = app_folder(place)
    name = app / "ca.pem"
    as_nobody("sh", "-c", f"printf \"app's own ca\\n\" > {name}")
    src = template(place, "{{ file('app/ca.pem') }}")
    dest = place / "out" / "ca.pem"
    stop = place / "stop"
    python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    swapper = subprocess.Popen([python, "-c", SWAPPER, str(name), str(target), str(stop)],
                               user="nobody", group=pwd.getpwnam("nobody").pw_gid)
    outcomes: dict[str, int] = {}
    try:
        for _ in range(20):
            proc = run_cli(["render", "--reveal", "--template", f"{src}:{dest}"], timeout=30)
            shown = proc.stdout + proc.stderr
            assert "root-only" not in shown
            if proc.returncode == 0:
                assert dest.read_text() == "app's own ca\n"
                outcome = "read the app's file"
            else:
                assert proc.returncode == 78, proc.stderr
                if "refusing to follow it" in proc.stderr:
                    outcome = "refused at the read"  # swapped between check and read
                elif "changed while it was checked; refusing it" in proc.stderr:
                    outcome = "refused at the check"  # swapped inside realpath itself
                else:
                    assert "is outside the allowed folders" in proc.stderr, proc.stderr
                    outcome = "refused at the check"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if dest.exists():
                assert "root-only" not in dest.read_text()
    finally:
        stop.touch()
        swapper.wait(timeout=10)
    assert swapper.returncode == 0
    assert outcomes.get("refused at the read"), outcomes  # the app's links were met
