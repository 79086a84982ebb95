"""render_all in-process: one read per path per generation, what changed, partial writes."""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import stat
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from entrypoint.config.model import Config, EnvTemplateSpec, OnChange, TemplateSpec
from entrypoint.errors import ConfigError, RenderError, TemplateError
from entrypoint.plan.resolution import Runtime
from entrypoint.plan.resolve import Generation
from entrypoint.render.templates import (
    FileChange,
    PartialRenderError,
    Rendered,
    render_all,
    render_env,
    render_files,
    template_sources,
    write_changed,
)
from entrypoint.sources.base import Fetched, Source
from entrypoint.sources.file.source import FileSource
from entrypoint.sources.local.consul import LocalConsulSource
from entrypoint.sources.local.folder import LocalSource
from entrypoint.sources.registry import Sources

DB_PASSWORD = "pw-Ww31-render-secret"
DB_USER = "v-app-Rr08"


class Counting(Source):
    """A local source that counts its reads per (path, version)."""

    name = "counting"

    def __init__(self, root: Path) -> None:
        self.inner = LocalSource(root)
        self.reads: dict[tuple[str, int | None], int] = {}

    def fetch(self, path: str, version: int | None = None) -> Fetched:
        self.reads[(path, version)] = self.reads.get((path, version), 0) + 1
        return self.inner.fetch(path, version)

    def describe(self, path: str) -> str:
        return self.inner.describe(path)

    def close(self) -> None:
        pass


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage() + " " + json.dumps(
            {k: str(v) for k, v in vars(record).items() if k in ("bytes", "mode")}))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    secrets = tmp_path / "secrets"
    (secrets / "database/creds").mkdir(parents=True)
    (secrets / "consul/config/app").mkdir(parents=True)
    (secrets / "database/creds/app.json").write_text(
        json.dumps({"username": DB_USER, "password": DB_PASSWORD}))
    (secrets / "consul/config/app/feature_x").write_text("on\n")
    return secrets


def make_runtime(config: Config, source: Counting, root: Path,
                 environ: Mapping[str, str] | None = None) -> tuple[Runtime, Lines]:
    log = logging.getLogger(f"test-templates-{id(config)}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    lines = Lines()
    log.addHandler(lines)
    sources = Sources({"vault": lambda: source, "consul": lambda: LocalConsulSource(root),
                       "file": _file_source}, {})
    return Runtime(config, dict(environ or {}), log, sources=sources), lines


def _file_source() -> FileSource:
    return FileSource()


def test_one_read_per_path_per_generation(root: Path, tmp_path: Path) -> None:
    """Env templates, file templates and references share a generation: one read, one lease."""
    creds = ("{{ secret('database/creds/app').username }}:"
             "{{ secret('database/creds/app').password }}")
    config = Config(
        template=[TemplateSpec(destination=tmp_path / "a", contents=creds),
                  TemplateSpec(destination=tmp_path / "b", contents=creds + "{{ 1 }}")],
        env_template=[EnvTemplateSpec(name="URL", contents=creds)])
    source = Counting(root)
    runtime, _ = make_runtime(config, source, root,
                              {"PW": "vault:database/creds/app#password"})
    resolution = runtime.resolve()
    result = render_all(config, runtime, resolution)
    assert source.reads == {("database/creds/app", None): 1}
    assert resolution.managed["URL"].reveal() == f"{DB_USER}:{DB_PASSWORD}"
    assert (tmp_path / "a").read_text() == f"{DB_USER}:{DB_PASSWORD}"
    assert result.env == ("URL",)
    # A new generation reads again (the engine seeds only what did not change).
    render_all(config, runtime, runtime.resolve())
    assert source.reads == {("database/creds/app", None): 2}


def test_version_pin_is_its_own_read(root: Path, tmp_path: Path) -> None:
    """secret('p?version=3') and secret('p') are two reads, each once."""
    config = Config(template=[TemplateSpec(
        destination=tmp_path / "v",
        contents="{{ secret('database/creds/app?version=3').username }}"
                 "{{ secret('/database/creds/app/').username }}"
                 "{{ secret('database/creds/app?version=3').password }}")])
    # A version is read locally only from a file kept for it, as Vault serves only those.
    shutil.copy(root / "database/creds/app.json", root / "database/creds/app@3.json")
    source = Counting(root)
    runtime, _ = make_runtime(config, source, root)
    render_all(config, runtime, runtime.resolve())
    assert source.reads == {("database/creds/app", 3): 1, ("database/creds/app", None): 1}


def test_result_lists_only_changed_destinations(root: Path, tmp_path: Path) -> None:
    """First render: all changed; same values: none; one value rotated: only its file."""
    hup = OnChange("signal", signal=1)
    config = Config(template=[
        TemplateSpec(destination=tmp_path / "creds", on_change=hup,
                     contents="{{ secret('database/creds/app').password }}"),
        TemplateSpec(destination=tmp_path / "flag", on_change=OnChange("none"),
                     contents="{{ consul('config/app/feature_x') }}"),
    ])
    runtime, lines = make_runtime(config, Counting(root), root)
    first = render_all(config, runtime, runtime.resolve())
    assert first.actions == [hup, OnChange("none")]
    again = render_all(config, runtime, runtime.resolve())
    assert (again.changed, again.actions) == ((), [])
    assert set(again.unchanged) == {tmp_path / "creds", tmp_path / "flag"}
    (root / "database/creds/app.json").write_text(
        json.dumps({"username": DB_USER, "password": "rotated-Tt62-secret"}))
    third = render_all(config, runtime, runtime.resolve())
    assert third.changed == (FileChange(tmp_path / "creds", hup),)
    assert all(DB_PASSWORD not in line and "rotated-Tt62" not in line for line in lines.lines)
    assert any(line.startswith(f"rendered {tmp_path / 'creds'}") for line in lines.lines)


def test_partial_commit_reports_what_is_in_place(root: Path, tmp_path: Path) -> None:
    """A rename failing after another succeeded: PartialRenderError lists the one in place."""
    (tmp_path / "blocked").mkdir()
    (tmp_path / "blocked/x").write_text("x")
    config = Config(template=[
        TemplateSpec(destination=tmp_path / "first", contents="one"),
        TemplateSpec(destination=tmp_path / "blocked", contents="two"),
        TemplateSpec(destination=tmp_path / "third", contents="three"),
    ])
    runtime, _ = make_runtime(config, Counting(root), root)
    with pytest.raises(PartialRenderError) as caught:
        render_all(config, runtime, runtime.resolve())
    assert caught.value.exit_code == 73
    assert caught.value.changed == (FileChange(tmp_path / "first", OnChange("restart")),)
    assert (tmp_path / "first").read_text() == "one"
    assert not (tmp_path / "third").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked", "first", "secrets"]


def test_template_error_writes_nothing(root: Path, tmp_path: Path) -> None:
    """render_files fails before write_changed: the first, valid, template is not written."""
    config = Config(template=[
        TemplateSpec(destination=tmp_path / "ok", contents="fine"),
        TemplateSpec(destination=tmp_path / "bad", contents="{{ secret('database/creds/app').x }}"),
    ])
    runtime, _ = make_runtime(config, Counting(root), root)
    resolution = runtime.resolve()
    with pytest.raises(TemplateError, match=r"has no key 'x' \(keys present: password, username\)"):
        render_files(config, runtime, resolution)
    assert not (tmp_path / "ok").exists()


def test_unchanged_file_gets_its_mode_and_owner_fixed(root: Path, tmp_path: Path) -> None:
    """Same bytes, new perms/owner in the spec: corrected in place, not reported as changed."""
    spec = TemplateSpec(destination=tmp_path / "f", contents="same")
    config = Config(template=[spec])
    runtime, _ = make_runtime(config, Counting(root), root)
    render_all(config, runtime, runtime.resolve())
    inode = (tmp_path / "f").stat().st_ino
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        changed_spec = replace(spec, perms=0o640, user="nobody", group=str(nobody.pw_gid))
    else:
        changed_spec = replace(spec, perms=0o640)
    config = replace(config, template=[changed_spec])
    result = render_all(config, runtime, runtime.resolve())
    assert result.changed == ()
    st = (tmp_path / "f").stat()
    assert (st.st_ino, stat.S_IMODE(st.st_mode)) == (inode, 0o640)
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_new_file_is_owned_as_configured(root: Path, tmp_path: Path) -> None:
    """user/group are applied to the temp file before it is moved into place."""
    nobody = pwd.getpwnam("nobody")
    config = Config(template=[TemplateSpec(destination=tmp_path / "o", contents="x",
                                           user="nobody", group=str(nobody.pw_gid))])
    runtime, _ = make_runtime(config, Counting(root), root)
    render_all(config, runtime, runtime.resolve())
    st = (tmp_path / "o").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (nobody.pw_uid, nobody.pw_gid,
                                                                0o600)


def test_unknown_owner_is_a_config_error(root: Path, tmp_path: Path) -> None:
    config = Config(template=[TemplateSpec(destination=tmp_path / "o", contents="x",
                                           user="no-such-user-here", origin="app.toml:3")])
    runtime, _ = make_runtime(config, Counting(root), root)
    with pytest.raises(ConfigError, match=r"app\.toml:3: template .* user 'no-such-user-here'"):
        render_all(config, runtime, runtime.resolve())
    assert not (tmp_path / "o").exists()


def test_env_sees_the_apps_environment(root: Path, tmp_path: Path) -> None:
    """env(): references resolved, earlier env templates visible, bootstrap variables not."""
    config = Config(env_template=[
        EnvTemplateSpec(name="FIRST", contents="{{ env('PW') }}|{{ env('PLAIN') }}"),
        EnvTemplateSpec(name="SECOND",
                        contents="{{ env('FIRST') }}|{{ env('VAULT_TOKEN', 'none') }}"),
    ])
    runtime, _ = make_runtime(config, Counting(root), root, {
        "PW": "vault:database/creds/app#password", "PLAIN": "plain",
        "VAULT_TOKEN": "s.bootstrap-Xx11"})
    resolution = runtime.resolve()
    values = render_env(config, runtime, resolution)
    assert values["SECOND"].reveal() == f"{DB_PASSWORD}|plain|none"
    assert resolution.child_env()["SECOND"] == f"{DB_PASSWORD}|plain|none"


def test_env_template_clashing_with_a_reference_is_refused(root: Path) -> None:
    config = Config(env_template=[EnvTemplateSpec(name="PW", contents="x", origin="a.toml:1")])
    runtime, _ = make_runtime(config, Counting(root), root,
                              {"PW": "vault:database/creds/app#password"})
    with pytest.raises(ConfigError, match="both a reference"):
        render_env(config, runtime, runtime.resolve())


def test_seeded_generation_does_not_read_again(root: Path, tmp_path: Path) -> None:
    """The engine's successor generation, seeded with unchanged fetches, renders with no read."""
    config = Config(template=[TemplateSpec(destination=tmp_path / "s",
                                           contents="{{ secret('database/creds/app').username }}")])
    source = Counting(root)
    runtime, _ = make_runtime(config, source, root)
    first = runtime.resolve()
    render_all(config, runtime, first)
    successor = Generation(runtime.sources, seed=first.generation.fetched)
    result = render_all(config, runtime, runtime.resolve(successor))
    assert source.reads == {("database/creds/app", None): 1}
    assert result.changed == ()


def test_write_changed_alone_and_template_sources(tmp_path: Path) -> None:
    """The pieces are usable alone: write_changed on rendered bytes; sources to watch."""
    spec = TemplateSpec(destination=tmp_path / "w/x", contents="")
    log = logging.getLogger("test-write-changed")
    first = write_changed([Rendered(spec, b"bytes")], log)
    assert [c.destination for c in first.changed] == [tmp_path / "w/x"]
    assert write_changed([Rendered(spec, b"bytes")], log).unchanged == (tmp_path / "w/x",)
    config = Config(template=[TemplateSpec(destination=tmp_path / "d", source=tmp_path / "t.j2"),
                              spec],
                    env_template=[EnvTemplateSpec(name="E", source=tmp_path / "e.j2")])
    assert template_sources(config) == [tmp_path / "t.j2", tmp_path / "e.j2"]


def test_render_error_names_destination_only(tmp_path: Path) -> None:
    """A write failure names the destination and the OS reason, never the content."""
    (tmp_path / "file").write_text("")
    spec = TemplateSpec(destination=tmp_path / "file/under/x", contents="")
    with pytest.raises(RenderError) as caught:
        write_changed([Rendered(spec, b"content-Secret-Kk01")], logging.getLogger("t"))
    assert str(tmp_path / "file/under/x") in str(caught.value)
    assert "content-Secret-Kk01" not in str(caught.value)



def test_renderer_owes_actions_after_a_partial_write(root: Path, tmp_path: Path) -> None:
    """The engine's callback: files moved into place before a failure are acted on later."""
    from entrypoint.render.templates import Renderer

    hup = OnChange("signal", signal=1)
    (tmp_path / "blocked").mkdir()
    config = Config(template=[
        TemplateSpec(destination=tmp_path / "first", contents="one", on_change=hup),
        TemplateSpec(destination=tmp_path / "blocked", contents="two",
                     on_change=OnChange("none")),
    ])
    runtime, _ = make_runtime(config, Counting(root), root)
    renderer = Renderer(config, runtime)
    with pytest.raises(PartialRenderError):
        renderer(runtime.resolve())
    (tmp_path / "blocked").rmdir()  # the operator fixes the destination
    assert renderer(runtime.resolve()) == [hup, OnChange("none")]
    assert renderer(runtime.resolve()) == []


def test_filters(root: Path, tmp_path: Path) -> None:
    """tojson (a whole secret too), b64encode/b64decode round trip, quote for sh."""
    config = Config(template=[TemplateSpec(destination=tmp_path / "f", contents=(
        "{{ secret('database/creds/app') | tojson }}\n"
        "{{ secret('database/creds/app').password | b64encode | b64decode }}\n"
        "{{ \"it's $HOME\" | quote }}\n"))])
    runtime, _ = make_runtime(config, Counting(root), root)
    render_all(config, runtime, runtime.resolve())
    lines = (tmp_path / "f").read_text().splitlines()
    assert json.loads(lines[0]) == {"username": DB_USER, "password": DB_PASSWORD}
    assert lines[1] == DB_PASSWORD
    assert lines[2] == "'it'\"'\"'s $HOME'"


def test_the_root_folder_is_never_allowed_implicitly(tmp_path: Path) -> None:
    """A template (or config file) sitting in / would otherwise open every file to file()."""
    from entrypoint.render.sandbox import allowed_folders

    assert allowed_folders([Path("/"), tmp_path]) == (tmp_path.resolve(),)
    assert allowed_folders([tmp_path], [Path("/")]) == (tmp_path.resolve(), Path("/"))
