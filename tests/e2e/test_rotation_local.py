"""Rotation on the local secrets directory: editing a file acts like a rotation."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import REPO, clean_env, start_cli
from tests.helpers.journal import events, wait_for
from tests.helpers.kube_volume import Volume

PROBE = str(REPO / "tests/helpers/app_probe.py")


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    root = tmp_path / "secrets"
    (root / "kv/app").mkdir(parents=True)
    (root / "kv/app/db.json").write_text(json.dumps({"password": "value-1"}))
    (root / "kv/app/other.json").write_text(json.dumps({"x": "unchanged"}))
    return root


def start(secrets: Path, journal: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    full = clean_env({
        "ENTRYPOINT_LOCAL_SECRETS": str(secrets),
        "ENTRYPOINT_CONTROL_SOCKET": "",
        "DB_PASSWORD": "vault:kv/app/db#password",
        "OTHER": "vault:kv/app/other#x",
        **env,
    })
    return start_cli(["--kill-timeout", "5s", *args, "--", sys.executable,
                      PROBE, str(journal), "DB_PASSWORD", "OTHER"],
                     full, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def stop_after() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:  # after a failed test: as docker stops it, so that its app goes too
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.communicate(timeout=10)  # reads stderr: a full pipe would block it
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def finish(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    return stderr


def write_secret(secrets: Path, value: str) -> None:
    target = secrets / "kv/app/db.json"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps({"password": value}))
    tmp.replace(target)  # as editors and config management do: atomically


def test_editing_a_secret_restarts_the_app_with_the_new_value(
        secrets: Path, tmp_path: Path, stop_after: list[subprocess.Popen[str]]) -> None:
    journal = tmp_path / "journal"
    proc = start(secrets, journal, "--wait-min", "100ms", "--wait-max", "1s")
    stop_after.append(proc)
    first = wait_for(journal, "start")[0]
    assert first["env"] == {"DB_PASSWORD": "value-1", "OTHER": "unchanged"}
    write_secret(secrets, "value-2")
    second = wait_for(journal, "start", 2)[1]
    assert second["env"]["DB_PASSWORD"] == "value-2"
    assert second["pid"] != first["pid"]
    assert [e["pid"] for e in events(journal, "stop")] == [first["pid"]]
    stderr = finish(proc)
    assert "rotation: restarting the app" in stderr
    assert "value-2" not in stderr and "value-1" not in stderr


def test_five_changes_in_one_window_are_one_restart(
        secrets: Path, tmp_path: Path, stop_after: list[subprocess.Popen[str]]) -> None:
    journal = tmp_path / "journal"
    proc = start(secrets, journal, "--wait-min", "1s", "--wait-max", "4s")
    stop_after.append(proc)
    wait_for(journal, "start")
    for n in range(2, 7):
        write_secret(secrets, f"value-{n}")
    second = wait_for(journal, "start", 2)[1]
    assert second["env"]["DB_PASSWORD"] == "value-6"
    # A later change is the next start: had the burst caused two restarts, the third start
    # would carry value-6 again, not value-7.
    write_secret(secrets, "value-7")
    starts = wait_for(journal, "start", 3)
    assert [s["env"]["DB_PASSWORD"] for s in starts] == ["value-1", "value-6", "value-7"]
    finish(proc)
    assert len(events(journal, "start")) == 3


def test_file_template_change_signals_the_app_without_a_restart(
        secrets: Path, tmp_path: Path, stop_after: list[subprocess.Popen[str]]) -> None:
    journal = tmp_path / "journal"
    rendered = tmp_path / "run/db.conf"
    config = tmp_path / "entrypoint.toml"
    config.write_text(
        "[[template]]\n"
        "contents = \"password={{ secret('kv/app/db').password }}\\n\"\n"
        f'destination = "{rendered}"\n'
        'on_change = "signal:SIGHUP"\n'
        "[rotation]\nwait_min = \"100ms\"\nwait_max = \"1s\"\n")
    full = clean_env({"ENTRYPOINT_LOCAL_SECRETS": str(secrets), "ENTRYPOINT_CONTROL_SOCKET": "",
                      "ENTRYPOINT_CONFIG": str(config)})
    proc = start_cli(["--", sys.executable, PROBE, str(journal),
                      "--file", str(rendered)], full, stderr=subprocess.PIPE, text=True)
    stop_after.append(proc)
    first = wait_for(journal, "start")[0]
    assert first["file"] == "password=value-1\n"
    assert oct(rendered.stat().st_mode & 0o777) == "0o600"
    write_secret(secrets, "value-2")
    hup = wait_for(journal, "hup")[0]
    assert hup["file"] == "password=value-2\n"  # the file was in place before the signal
    assert hup["pid"] == first["pid"]
    finish(proc)
    assert len(events(journal, "start")) == 1  # signalled, not restarted


def test_editing_a_template_source_renders_again_and_signals(
        secrets: Path, tmp_path: Path, stop_after: list[subprocess.Popen[str]]) -> None:
    journal = tmp_path / "journal"
    rendered = tmp_path / "run/db.conf"
    source = tmp_path / "db.conf.j2"
    source.write_text("password={{ secret('kv/app/db').password }}\n")
    config = tmp_path / "entrypoint.toml"
    config.write_text(
        "[[template]]\n"
        f'source = "{source}"\n'
        f'destination = "{rendered}"\n'
        'on_change = "signal:SIGHUP"\n'
        "[rotation]\nwait_min = \"100ms\"\nwait_max = \"1s\"\n")
    full = clean_env({"ENTRYPOINT_LOCAL_SECRETS": str(secrets), "ENTRYPOINT_CONTROL_SOCKET": "",
                      "ENTRYPOINT_CONFIG": str(config)})
    proc = start_cli(["--", sys.executable, PROBE, str(journal),
                      "--file", str(rendered)], full, stderr=subprocess.PIPE, text=True)
    stop_after.append(proc)
    assert wait_for(journal, "start")[0]["file"] == "password=value-1\n"
    edited = source.with_suffix(".tmp")
    edited.write_text("pw={{ secret('kv/app/db').password }}\n")
    edited.replace(source)
    assert wait_for(journal, "hup")[0]["file"] == "pw=value-1\n"
    stderr = finish(proc)
    assert "template " in stderr and "changed" in stderr
    assert len(events(journal, "start")) == 1


def test_every_update_of_a_kubernetes_secret_volume_restarts_the_app(
        tmp_path: Path, stop_after: list[subprocess.Popen[str]]) -> None:
    """A ``file:`` reference into a secret volume as the kubelet writes it: each update
    swaps the ``..data`` link and removes the old folder. The first update used to be
    the last one seen: the watch stayed on the removed folder."""
    volume = Volume(tmp_path / "vol", {"token": "kube-secret-a"})
    journal = tmp_path / "journal"
    env = clean_env({"ENTRYPOINT_CONTROL_SOCKET": "", "TOKEN": f"file:{volume.root}/token"})
    proc = start_cli(["--kill-timeout", "5s", "--wait-min", "0s", "--wait-max", "0s", "--",
                      sys.executable, PROBE, str(journal), "TOKEN"],
                     env, stderr=subprocess.PIPE, text=True)
    stop_after.append(proc)
    assert wait_for(journal, "start")[0]["env"] == {"TOKEN": "kube-secret-a"}
    for count, value in enumerate(("kube-secret-b", "kube-secret-c", "kube-secret-d"), start=2):
        volume.update({"token": value})
        assert wait_for(journal, "start", count)[count - 1]["env"] == {"TOKEN": value}
    stderr = finish(proc)
    assert "a link on its way was replaced" in stderr
    assert "kube-secret-" not in stderr


def test_a_secrets_folder_replaced_whole_stays_watched(
        secrets: Path, tmp_path: Path, stop_after: list[subprocess.Popen[str]]) -> None:
    """``rm -rf kv/app && mv kv/app.new kv/app``: the new folder's values are read, and
    later edits in it are seen (before, the watch ended with the removed folder)."""
    journal = tmp_path / "journal"
    proc = start(secrets, journal, "--wait-min", "0s", "--wait-max", "0s")
    stop_after.append(proc)
    assert wait_for(journal, "start")[0]["env"]["DB_PASSWORD"] == "value-1"
    staged = secrets / "kv/app.new"
    staged.mkdir()
    (staged / "db.json").write_text(json.dumps({"password": "value-2"}))
    (staged / "other.json").write_text(json.dumps({"x": "unchanged"}))
    for file in (secrets / "kv/app").iterdir():
        file.unlink()
    (secrets / "kv/app").rmdir()
    staged.rename(secrets / "kv/app")
    assert wait_for(journal, "start", 2)[1]["env"]["DB_PASSWORD"] == "value-2"
    write_secret(secrets, "value-3")
    assert wait_for(journal, "start", 3)[2]["env"]["DB_PASSWORD"] == "value-3"
    finish(proc)


def test_a_secrets_folder_moved_away_and_replaced_is_followed(
        secrets: Path, tmp_path: Path, stop_after: list[subprocess.Popen[str]]) -> None:
    """``mv secrets secrets.old && mv secrets.new secrets``, a deploy that keeps the old
    folder: the new one's values are read, and its later edits seen. Before, the watch
    stayed on the old folder, and nothing was seen until it was removed."""
    journal = tmp_path / "journal"
    proc = start(secrets, journal, "--wait-min", "0s", "--wait-max", "0s")
    stop_after.append(proc)
    assert wait_for(journal, "start")[0]["env"]["DB_PASSWORD"] == "value-1"
    staged = tmp_path / "secrets.new"
    (staged / "kv/app").mkdir(parents=True)
    (staged / "kv/app/db.json").write_text(json.dumps({"password": "value-2"}))
    (staged / "kv/app/other.json").write_text(json.dumps({"x": "unchanged"}))
    secrets.rename(tmp_path / "secrets.old")
    staged.rename(secrets)
    assert wait_for(journal, "start", 2)[1]["env"]["DB_PASSWORD"] == "value-2"
    write_secret(secrets, "value-3")
    assert wait_for(journal, "start", 3)[2]["env"]["DB_PASSWORD"] == "value-3"
    assert "value-" not in finish(proc)
