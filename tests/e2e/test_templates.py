"""Templates through the real CLI: render, --exec, errors at file:line, atomic writes."""

from __future__ import annotations

import json
import os
import resource
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers.cli import REPO, run_cli
from tests.helpers.secrecy import seed_secret

# Values chosen to break naive quoting in every format: quotes, colon, backslash, $, #, space.
DB_PASSWORD = "p4ss:w'o\"rd\\$HOME #x y-SECRET"
DB_USER = "v-app-Qq71"
API_TOKEN = "tok-Hh20-template-secret"
STATIC_PASSWORD = "static-Mm44-secret-pw"
# A PEM key (newlines: escaped by repr and JSON) and a value holding ' and \ and a tab.
PEM_KEY = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC-Pp52a\n"
           "Kq9uTzX3m0aL7yq2cQf1Rw8sVb4nJd6Hh0eGkYiUo5tA-Pp52b\n-----END PRIVATE KEY-----\n")
ODD_VALUE = "it's a \\ back\tslash-Secret-Qq19"
SECRETS = (DB_PASSWORD, DB_USER, API_TOKEN, STATIC_PASSWORD, PEM_KEY, ODD_VALUE)

DUMP_ENV = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    root = tmp_path / "secrets"
    (root / "kv/app").mkdir(parents=True)
    (root / "database/creds").mkdir(parents=True)
    (root / "database/creds/app.json").write_text(json.dumps(
        {"username": DB_USER, "password": DB_PASSWORD}))
    (root / "kv/app/db.json").write_text(json.dumps(
        {"username": "app", "password": STATIC_PASSWORD, "port": 6543}))
    (root / "kv/app/api.json").write_text(json.dumps(
        {"token": API_TOKEN, "endpoint": "https://api.example.test/v1"}))
    (root / "kv/app/tls.json").write_text(json.dumps({"key": PEM_KEY, "odd": ODD_VALUE}))
    return root


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def leak_forms(value: str) -> set[str]:
    """A value as it can leak: as is, escaped by repr or JSON, upper- or lower-cased, and
    each line of a multi-line value."""
    forms = {value, repr(value)[1:-1], json.dumps(value)[1:-1], value.upper(), value.lower()}
    forms.update(line for line in value.splitlines() if len(line) >= 8)
    return forms


def assert_no_secret(text: str) -> None:
    for value in SECRETS:
        for form in leak_forms(value):
            assert form not in text, "a secret value leaked into the output"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# -- the shipped examples -------------------------------------------------------------------

def test_shipped_examples_render_against_a_local_secrets_directory(
        secrets_dir: Path, tmp_path: Path) -> None:
    """Every example in templates/ renders to a file its format's own parser reads back."""
    out = tmp_path / "run"
    example = (REPO / "templates/example.toml").read_text()
    config = write(tmp_path / "conf/example.toml",
                   example.replace('source = "', f'source = "{REPO}/templates/')
                   .replace("/run/app/", f"{out}/"))
    proc = run_cli(["render", "--config", str(config), "--reveal", "--format", "json"],
                   {"ENTRYPOINT_LOCAL_SECRETS": str(secrets_dir)})
    assert proc.returncode == 0, proc.stderr
    assert_no_secret(proc.stderr)

    # dotenv: read back by a real shell.
    shell = subprocess.run(
        ["sh", "-c", 'set -a; . "$1"; printf "%s\\n%s\\n%s" "$DB_PASSWORD" "$DB_USER" "$API_TOKEN"',
         "sh", str(out / "app.env")], capture_output=True, text=True, check=True)
    assert shell.stdout.split("\n") == [DB_PASSWORD, DB_USER, API_TOKEN]

    database = yaml.safe_load((out / "database.yml").read_text())["production"]
    assert (database["username"], database["password"], database["port"]) == (
        DB_USER, DB_PASSWORD, 6543)

    config_json = json.loads((out / "config.json").read_text())
    assert config_json["database"]["password"] == DB_PASSWORD
    assert config_json["api"]["token"] == API_TOKEN

    line = (out / "pgpass").read_text()
    assert line.endswith("\n") and line.count("\n") == 1
    fields, current, escaped = [], "", False
    for char in line.rstrip("\n"):
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields, current = [*fields, current], ""
        else:
            current += char
    assert [*fields, current] == ["db", "6543", "app", DB_USER, DB_PASSWORD]

    assert mode(out / "app.env") == 0o600
    assert mode(out / "pgpass") == 0o600
    assert mode(out / "config.json") == 0o640
    url = json.loads(proc.stdout)["DATABASE_URL"]
    assert url.startswith(f"postgresql://{DB_USER}:") and url.endswith("@db/app")


# -- env templates ----------------------------------------------------------------------------

def test_env_template_is_in_the_apps_environment(secrets_dir: Path, tmp_path: Path) -> None:
    """--exec: an [[env_template]] value, rendered from secrets and other variables."""
    write(tmp_path / "dsn.j2", "host={{ env('DB_HOST') }} user={{ secret('kv/app/db').username }}"
                               " password={{ env('DB_PASSWORD') }}\n")
    config = write(tmp_path / "app.toml", '[[env_template]]\nname = "DSN"\nsource = "dsn.j2"\n'
                                          '[[env_template]]\nname = "TOKEN_B64"\n'
                                          "contents = \"{{ secret('kv/app/api').token "
                                          '| b64encode }}"\n')
    dump = tmp_path / "env.json"
    proc = run_cli(["--exec", "--config", str(config), "--", sys.executable, "-c", DUMP_ENV,
                    str(dump)],
                   {"ENTRYPOINT_LOCAL_SECRETS": str(secrets_dir), "DB_HOST": "db.internal",
                    "DB_PASSWORD": "vault:kv/app/db#password",
                    "VAULT_TOKEN": "s.bootstrap-never-rendered"})
    assert proc.returncode == 0, proc.stderr
    env = json.loads(dump.read_text())
    # The trailing newline of the template file is not part of the value.
    assert env["DSN"] == f"host=db.internal user=app password={STATIC_PASSWORD}"
    import base64
    assert base64.b64decode(env["TOKEN_B64"]).decode() == API_TOKEN
    assert_no_secret(proc.stderr)


def test_env_cannot_read_bootstrap_credentials(secrets_dir: Path, tmp_path: Path) -> None:
    """env('VAULT_TOKEN') fails: the entrypoint's own credentials are not the app's."""
    write(tmp_path / "t.j2", "{{ env('VAULT_TOKEN') }}")
    proc = run_cli(["render", "--local-secrets", str(secrets_dir),
                    "--template", f"{tmp_path / 't.j2'}:{tmp_path / 'out'}"],
                   {"VAULT_TOKEN": "s.bootstrap-token-Zz99"})
    assert proc.returncode == 78
    assert "VAULT_TOKEN is not set" in proc.stderr
    assert "s.bootstrap-token-Zz99" not in proc.stderr


# -- file templates: modes, rewrites, atomic failure -------------------------------------

def test_file_template_perms_default_0600_and_custom(secrets_dir: Path, tmp_path: Path) -> None:
    """--template SRC:DEST gives 0600; SRC:DEST:0644 and a TOML perms are applied as given."""
    src = write(tmp_path / "t.j2", "pw={{ secret('kv/app/db').password }}\n")
    config = write(tmp_path / "c.toml", f'[[template]]\nsource = "t.j2"\n'
                                        f'destination = "{tmp_path}/out/c.txt"\nperms = "0440"\n')
    proc = run_cli(["render", "--local-secrets", str(secrets_dir), "--config", str(config),
                    "--template", f"{src}:{tmp_path}/out/a/deep/default.txt",
                    "--template", f"{src}:{tmp_path}/out/custom.txt:0644"])
    assert proc.returncode == 0, proc.stderr
    # A flag replaces the file's list (flags > file): the TOML template is not rendered.
    assert not (tmp_path / "out/c.txt").exists()
    assert mode(tmp_path / "out/a/deep/default.txt") == 0o600
    assert mode(tmp_path / "out/custom.txt") == 0o644
    assert (tmp_path / "out/custom.txt").read_text() == f"pw={STATIC_PASSWORD}\n"
    proc = run_cli(["render", "--local-secrets", str(secrets_dir), "--config", str(config)])
    assert proc.returncode == 0, proc.stderr
    assert mode(tmp_path / "out/c.txt") == 0o440


def test_unchanged_content_is_not_rewritten(secrets_dir: Path, tmp_path: Path) -> None:
    """A second render with the same values keeps inode and mtime; a new value replaces it."""
    src = write(tmp_path / "t.j2", "pw={{ secret('kv/app/db').password }}\n")
    dest = tmp_path / "out/app.conf"
    args = ["render", "--local-secrets", str(secrets_dir), "--template", f"{src}:{dest}"]
    assert run_cli(args).returncode == 0
    before = dest.stat()
    proc = run_cli(args)
    assert proc.returncode == 0, proc.stderr
    after = dest.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert "rendered" not in proc.stderr

    (secrets_dir / "kv/app/db.json").write_text(json.dumps({"password": "rotated-Pp55-value"}))
    proc = run_cli(args)
    assert proc.returncode == 0, proc.stderr
    assert dest.read_text() == "pw=rotated-Pp55-value\n"
    assert dest.stat().st_ino != before.st_ino  # replaced, not written in place
    assert f"rendered {dest}" in proc.stderr
    assert leftovers(dest.parent) == []


def _limit_file_size(limit: int) -> None:
    # Ignored SIGXFSZ makes an oversized write fail with EFBIG, as a full disk fails with
    # ENOSPC: a real failure in the middle of writing, with no mount needed.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(
        secrets_dir: Path, tmp_path: Path) -> None:
    """A write that fails midway (file size limit, as a full disk) -> 73, old file intact."""
    src = write(tmp_path / "t.j2", "{% for i in range(2000) %}{{ secret('kv/app/api').token }}\n"
                                   "{% endfor %}")
    dest = write(tmp_path / "out/big.conf", "old content\n")
    proc = run_cli(["render", "--local-secrets", str(secrets_dir), "--template", f"{src}:{dest}"],
                   preexec_fn=lambda: _limit_file_size(4096))
    assert proc.returncode == 73, proc.stderr
    assert f"cannot write {dest}" in proc.stderr
    assert "File too large" in proc.stderr
    assert dest.read_text() == "old content\n"
    assert leftovers(dest.parent) == []
    assert_no_secret(proc.stderr)


def test_destination_that_cannot_be_replaced_keeps_everything(
        secrets_dir: Path, tmp_path: Path) -> None:
    """A destination that is a folder: the rename fails, the other files are not touched."""
    good_src = write(tmp_path / "good.j2", "new {{ secret('kv/app/db').password }}\n")
    good = write(tmp_path / "out/good.conf", "old good\n")
    blocked = tmp_path / "out/blocked.conf"
    write(blocked / "keep.txt", "inside\n")
    proc = run_cli(["render", "--local-secrets", str(secrets_dir),
                    "--template", f"{good_src}:{blocked}", "--template", f"{good_src}:{good}"])
    assert proc.returncode == 73, proc.stderr
    assert f"cannot write {blocked}" in proc.stderr
    assert (blocked / "keep.txt").read_text() == "inside\n"
    # Staged but not committed: "render everything, then act" also holds for the writes.
    assert good.read_text() == "old good\n"
    assert leftovers(tmp_path / "out") == []
    assert_no_secret(proc.stderr)


def test_destination_under_a_file_is_a_render_error(secrets_dir: Path, tmp_path: Path) -> None:
    """The parent folder cannot be created because it is a file: 73 naming the destination."""
    src = write(tmp_path / "t.j2", "x\n")
    write(tmp_path / "plain", "a file\n")
    dest = tmp_path / "plain/sub/app.conf"
    proc = run_cli(["render", "--local-secrets", str(secrets_dir), "--template", f"{src}:{dest}"])
    assert proc.returncode == 73
    assert f"cannot write {dest}" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- template errors ----------------------------------------------------------------------

def test_missing_key_names_file_and_line_and_writes_nothing(
        secrets_dir: Path, tmp_path: Path) -> None:
    """A typo on line 3 -> 78 with templates/db.yml.j2:3; no destination is written at all."""
    (tmp_path / "templates").mkdir()
    write(tmp_path / "templates/ok.j2", "user={{ secret('kv/app/db').username }}\n")
    write(tmp_path / "templates/db.yml.j2",
          "db:\n  user: {{ secret('kv/app/db').username }}\n"
          "  password: {{ secret('kv/app/db').pasword }}\n")
    proc = run_cli(["render", "--local-secrets", str(secrets_dir),
                    "--template", f"templates/ok.j2:{tmp_path}/out/ok",
                    "--template", f"templates/db.yml.j2:{tmp_path}/out/db.yml"], cwd=tmp_path)
    assert proc.returncode == 78
    assert "templates/db.yml.j2:3: " in proc.stderr
    assert "'pasword'" in proc.stderr
    assert "keys present: password, port, username" in proc.stderr
    assert not (tmp_path / "out").exists()
    assert_no_secret(proc.stderr)
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("text", "line", "expected"), [
    ("a\nb\n{% for x in %}\n", 3, "Expected an expression"),
    ("ok\n{{ secret('kv/app/nothing').x }}\n", 2, "secret kv/app/nothing not found"),
    ("{{ undefined_name }}", 1, "'undefined_name' is undefined"),
    ("\n\n\n{{ env('NOT_SET_ANYWHERE') }}", 4, "NOT_SET_ANYWHERE is not set"),
    ("{{ secret('kv/app/db#password') }}", 1, "pick a key with .key or ['key']"),
    ("{% macro m() %}\n{{ secret('kv/app/db').nope }}\n{% endmacro %}\n{{ m() }}", 2,
     "secret kv/app/db has no key 'nope'"),
])
def test_template_errors_name_the_line(secrets_dir: Path, tmp_path: Path, text: str,
                                       line: int, expected: str) -> None:
    """Syntax errors, missing paths, undefined names and variables: all at file:line, 78."""
    src = write(tmp_path / "bad.j2", text)
    proc = run_cli(["render", "--local-secrets", str(secrets_dir),
                    "--template", f"{src}:{tmp_path}/out"], cwd=tmp_path)
    assert proc.returncode == 78
    assert f"bad.j2:{line}: " in proc.stderr
    assert expected in proc.stderr


def test_inline_contents_error_names_the_config_file(secrets_dir: Path, tmp_path: Path) -> None:
    """contents = "..." in TOML: the error names the config file and the line inside."""
    config = write(tmp_path / "app.toml", '[[env_template]]\nname = "X"\n'
                                          "contents = \"ok\\n{{ secret('kv/app/db').nope }}\"\n")
    proc = run_cli(["render", "--local-secrets", str(secrets_dir), "--config", str(config)])
    assert proc.returncode == 78
    assert f"{config}:1: contents of [[env_template]] X, line 2: " in proc.stderr
    assert "has no key 'nope'" in proc.stderr


@pytest.mark.parametrize("escape", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ secret('kv/app/db').__class__.__init__.__globals__ }}",
    "{{ env.__globals__['os'].system('touch PWNED') }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
])
def test_sandbox_refuses_attribute_escapes(secrets_dir: Path, tmp_path: Path,
                                           escape: str) -> None:
    """Dunder attribute access is refused by the sandbox: 78, nothing written, nothing run."""
    src = write(tmp_path / "evil.j2", f"line one\n{escape}\n")
    proc = run_cli(["render", "--local-secrets", str(secrets_dir),
                    "--template", f"{src}:{tmp_path}/out"], cwd=tmp_path)
    assert proc.returncode == 78
    assert "evil.j2:2: " in proc.stderr
    assert "unsafe" in proc.stderr or "is undefined" in proc.stderr
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("leaky", [
    "{{ {}[secret('kv/app/api').token] }}",                   # a value used as a key
    "{{ {}[secret('database/creds/app').username] }}",
    "{{ secret('kv/app/api').token.encode('ascii') + 1 }}",
    "{{ secret('kv/app/db').password ~ 1 / 0 }}",
    "{{ (secret('database/creds/app').password | b64decode) }}",
    "{{ secret(secret('kv/app/api').token) }}",                # a value used as a path
    "{{ consul(secret('kv/app/db').password) }}",
    "{{ file(secret('kv/app/api').token) }}",
    "{{ env(secret('kv/app/db').password) }}",
    "{% set x = secret('kv/app/db').password %}{{ x.missing_attr }}",
    # Issue 14 item 4: transformed values, which no search for the value itself finds.
    "{{ secret('kv/app/tls').key | filesizeformat }}",       # float() quotes the PEM, escaped
    "{{ secret(secret('kv/app/api').token | upper) }}",       # an upper-cased value as a path
    "{{ {}[secret('kv/app/api').token | upper] }}",           # ... and as a key
    "{{ {} | attr(secret('kv/app/db').password | lower) }}",  # ... as an attribute
    "{{ {}[secret('kv/app/tls').odd] }}",                     # a key holding ' and \\
    "{{ env(secret('kv/app/tls').odd ~ 'x') }}",
    "{{ secret('kv/app/tls').odd | filesizeformat(true) }}",
])
def test_no_secret_value_in_any_error(secrets_dir: Path, tmp_path: Path, leaky: str) -> None:
    """Errors whose Python or Jinja message would quote a value are scrubbed (text and json)."""
    src = write(tmp_path / "leak.j2", leaky)
    for fmt in ("text", "json"):
        proc = run_cli(["render", "--local-secrets", str(secrets_dir), "--log-format", fmt,
                        "--template", f"{src}:{tmp_path}/out"])
        assert proc.returncode in (78, 69), proc.stderr
        assert "leak.j2:1: " in proc.stderr
        assert_no_secret(proc.stderr)
        assert_no_secret(proc.stdout)


def test_file_reads_only_allowed_folders(secrets_dir: Path, tmp_path: Path) -> None:
    """file() reads beside the template and the config; not /etc, not ../, not via a symlink."""
    (tmp_path / "conf/tpl").mkdir(parents=True)
    write(tmp_path / "conf/tpl/ca.pem", "--CA--\n")
    write(tmp_path / "conf/extra.txt", "extra\n")
    write(tmp_path / "outside.txt", "outside\n")
    (tmp_path / "conf/tpl/link.txt").symlink_to(tmp_path / "outside.txt")
    write(tmp_path / "conf/tpl/ok.j2", "{{ file('ca.pem') }}{{ file('../extra.txt') }}")
    config = write(tmp_path / "conf/app.toml",
                   f'[[template]]\nsource = "tpl/ok.j2"\ndestination = "{tmp_path}/out/ok"\n')
    proc = run_cli(["render", "--local-secrets", str(secrets_dir), "--config", str(config)])
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out/ok").read_text() == "--CA--\nextra\n"
    for bad in ("/etc/hostname", "../../outside.txt", "link.txt"):
        write(tmp_path / "conf/tpl/ok.j2", f"{{{{ file('{bad}') }}}}")
        proc = run_cli(["render", "--local-secrets", str(secrets_dir), "--config", str(config)])
        assert proc.returncode == 78, bad
        assert "outside the allowed folders" in proc.stderr


def test_file_never_reads_the_working_folder_or_proc(secrets_dir: Path, tmp_path: Path) -> None:
    """Issue 14 item 3: without a config file, render started from / let file() read
    /etc/shadow and /proc/self/environ (which holds VAULT_TOKEN): the working folder was
    allowed. Only the template's folder is; /proc, /sys and /dev never are, even when
    template_allowed_dirs lists /; a FIFO in an allowed folder is refused, not hung on."""
    token = seed_secret("hvs-proc-environ-Zz81-token")
    src = write(tmp_path / "t.j2", "")
    for bad in ("/etc/shadow", "/proc/self/environ", "../../../../../../proc/1/environ"):
        src.write_text(f"{{{{ file('{bad}') }}}}")
        proc = run_cli(["render", "--local-secrets", str(secrets_dir),
                        "--template", f"{src}:{tmp_path}/out"],
                       {"VAULT_TOKEN": token}, cwd=Path("/"))
        assert proc.returncode == 78, (bad, proc.stderr)
        assert "outside the allowed folders" in proc.stderr or "never read" in proc.stderr
        assert token not in proc.stderr + proc.stdout
        assert not (tmp_path / "out").exists()
    src.write_text("{{ file('/proc/self/environ') }}")
    proc = run_cli(["render", "--local-secrets", str(secrets_dir), "--template-allowed-dirs",
                    "/", "--template", f"{src}:{tmp_path}/out"], {"VAULT_TOKEN": token})
    assert proc.returncode == 78, proc.stderr
    assert "is under /proc, /sys or /dev, which templates never read" in proc.stderr
    os.mkfifo(tmp_path / "fifo")
    src.write_text("{{ file('fifo') }}")
    proc = run_cli(["render", "--template", f"{src}:{tmp_path}/out"], timeout=30)
    assert proc.returncode == 78, proc.stderr
    assert "is not a regular file" in proc.stderr


def test_each_path_is_read_once_per_render(tmp_path: Path) -> None:
    """Each path is read once per generation, however often and however it is spelt."""
    src = write(tmp_path / "t.j2", "{{ file('n.txt') }}/{{ file('n.txt') }}/{{ file('./n.txt') }}")
    write(tmp_path / "n.txt", "first")
    proc = run_cli(["render", "--template", f"{src}:{tmp_path}/out"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out").read_text() == "first/first/first"
    assert proc.stderr.count("fetched file:") == 1


def test_supervised_app_finds_its_files_in_place(secrets_dir: Path, tmp_path: Path) -> None:
    """Supervise mode: files are rendered before the app starts; debug logs carry no value."""
    src = write(tmp_path / "t.j2", "{{ secret('database/creds/app').password }}")
    dest = tmp_path / "run/creds"
    copy = tmp_path / "seen"
    app = ("import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])")
    proc = run_cli(["--log-level", "debug", "--template", f"{src}:{dest}", "--",
                    sys.executable, "-c", app, str(dest), str(copy)],
                   {"ENTRYPOINT_LOCAL_SECRETS": str(secrets_dir)}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert copy.read_text() == DB_PASSWORD
    assert f"rendered {dest}" in proc.stderr
    assert_no_secret(proc.stderr)
    assert_no_secret(proc.stdout)


def test_destination_in_a_folder_even_root_cannot_write(secrets_dir: Path,
                                                         tmp_path: Path) -> None:
    """/proc refuses new files to everyone, root included: 73, the old file untouched."""
    before = Path("/proc/version").read_text()
    src = write(tmp_path / "t.j2", "not a kernel version\n")
    proc = run_cli(["render", "--local-secrets", str(secrets_dir),
                    "--template", f"{src}:/proc/version"])
    assert proc.returncode == 73
    assert "cannot write /proc/version: cannot create a file in /proc" in proc.stderr
    assert Path("/proc/version").read_text() == before
