"""Messages name what happened in plain words, never a Python class (issue 18.6)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from entrypoint.cli import main
from entrypoint.describe import os_reason, transport_reason
from tests.helpers.cli import run_cli
from tests.helpers.http_servers import Quiet, serving

CLASS_NAMES = ("Error", "Exception", "MaxRetry", "HTTPConnectionPool")


def test_transport_reasons_of_real_failures(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(requests.exceptions.ConnectionError) as refused:
            requests.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert transport_reason(refused.value) == "connection refused"
    with pytest.raises(requests.exceptions.ConnectionError) as unknown:
        requests.get("http://no-such-host.invalid/", timeout=5)
    assert transport_reason(unknown.value) == "host name not found"


def test_os_reasons(tmp_path: Path) -> None:
    with pytest.raises(OSError) as folder:
        tmp_path.read_text()
    assert os_reason(folder.value) == "is a folder"
    with pytest.raises(UnicodeDecodeError) as binary:
        b"\xff".decode("utf-8")
    assert os_reason(binary.value) == "not UTF-8 text (byte 0)"


@pytest.fixture
def failing_vault() -> Iterator[str]:
    """A server that answers every request as Vault does when its storage fails."""

    class Handler(Quiet):
        def do_GET(self) -> None:
            self.answer(500, {"errors": ["storage backend unavailable: disk full"]})

        do_PUT = do_POST = do_GET

    with serving(Handler) as addr:
        yield addr


def test_a_5xx_shows_vaults_own_words(failing_vault: str) -> None:
    result = run_cli(["check"], {"VAULT_ADDR": failing_vault, "VAULT_TOKEN": "t",
                                 "ENTRYPOINT_STARTUP_TIMEOUT": "0.3s",
                                 "A": "vault:kv/app#k"})
    assert result.returncode == 69, result.stdout + result.stderr
    assert "storage backend unavailable: disk full" in result.stdout
    assert "HTTP 500" in result.stdout


def test_unreachable_vault_and_folder_config_in_plain_words(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        addr = f"http://127.0.0.1:{closed.getsockname()[1]}"
        result = run_cli(["render"], {"VAULT_ADDR": addr, "VAULT_TOKEN": "t",
                                      "ENTRYPOINT_STARTUP_TIMEOUT": "0.2s",
                                      "A": "vault:kv/app#k"})
    assert result.returncode == 69
    assert "unreachable (connection refused)" in result.stderr
    assert not any(name in result.stderr for name in CLASS_NAMES), result.stderr
    folder = run_cli(["render"], {"ENTRYPOINT_CONFIG": str(tmp_path)})
    assert folder.returncode == 78 and "cannot be read: is a folder" in folder.stderr


def test_unreadable_config_exits_77_as_documented(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """configuration.md: 77 for an unreadable file. The tests run as root, who reads any
    file, so the kernel's refusal is played by read_text (the entrypoint's own code runs)."""
    config = tmp_path / "entrypoint.toml"
    config.write_text("")
    real = Path.read_text

    def refuse(self: Path, *args: Any, **kwargs: Any) -> str:
        if self == config:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refuse)
    code = main(["render"], {"ENTRYPOINT_CONFIG": str(config), "PATH": os.defpath})
    assert code == 77
    assert f"config file {config} is not readable" in capsys.readouterr().err


def test_template_errors_name_their_kind_in_words(tmp_path: Path) -> None:
    (tmp_path / "sec/kv").mkdir(parents=True)
    (tmp_path / "sec/kv/a.json").write_text('{"x": "no-such-path", "n": "abc"}')
    cases = {
        "{{ secret(secret('kv/a').x | upper) }}": "secret('<computed>'): not found",
        "{{ secret('kv/a').n | filesizeformat }}": "a value of the wrong form (its message is",
        "{{ 1 // 0 }}": "a division by zero (its message is not shown",
        "{{ ''.__class__ }}": "refused by the sandbox",
    }
    for template, expected in cases.items():
        (tmp_path / "t.j2").write_text(template)
        result = run_cli(["render"], {"ENTRYPOINT_LOCAL_SECRETS": str(tmp_path / "sec"),
                                      "ENTRYPOINT_TEMPLATE": f"{tmp_path / 't.j2'}:"
                                                             f"{tmp_path / 'out'}"})
        assert result.returncode == 78, (template, result.stderr)
        assert expected in result.stderr, (template, result.stderr)
        assert not any(name in result.stderr for name in
                       ("SecretNotFound", "ValueError", "ZeroDivisionError", "SecurityError",
                        "TypeError")), result.stderr
