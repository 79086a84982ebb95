"""The suite-wide secrecy check itself (tests/helpers/secrecy.py): that it collects what
the entrypoint says, skips what is the app's or revealed on purpose, and finds a leak."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.helpers import secrecy
from tests.helpers.cli import run_cli, start_cli

VALUE = secrecy.seed_secret("sv-Secrecy-Check-91x")


def _secrets(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "sec/kv").mkdir(parents=True)
    (tmp_path / "sec/kv/app.json").write_text(json.dumps({"v": VALUE}))
    return {"ENTRYPOINT_LOCAL_SECRETS": str(tmp_path / "sec"), "APP_V": "vault:kv/app#v"}


def test_find_leaks_by_shape_and_by_value() -> None:
    token = "hvs." + "A" * 24
    outputs = [secrecy.Output(f"login ok {token} done", "a"),
               secrecy.Output("nothing here", "b"),
               secrecy.Output(f"value={VALUE}", "c")]
    found = secrecy.find_leaks(outputs, {token, VALUE, "hvs." + "B" * 24})
    assert sorted(where for _, where in found) == ["a", "c"]
    assert all(VALUE not in masked and token not in masked for masked, _ in found)


def test_cli_output_is_collected_except_what_is_revealed(tmp_path: Path) -> None:
    env = _secrets(tmp_path)
    before = len(secrecy._outputs)
    redacted = run_cli(["render"], env)
    assert redacted.returncode == 0 and "APP_V=<redacted>" in redacted.stdout
    revealed = run_cli(["render", "--reveal"], env)
    assert VALUE in revealed.stdout  # on purpose: marked revealed, so not collected
    new = secrecy._outputs[before:]
    assert any("APP_V=<redacted>" in o.text for o in new)  # render's stdout is checked
    assert not any(VALUE in o.text for o in new)
    assert secrecy.find_leaks(new, {VALUE}) == []


def test_app_stdout_is_the_apps_and_stderr_files_are_read(tmp_path: Path) -> None:
    """Under ``run`` stdout belongs to the app (it may print its own secret); an
    entrypoint's stderr sent to a file is read at the end of the session."""
    log = tmp_path / "ep.log"
    with log.open("wb") as err:
        proc = start_cli(["--exec", "--", "printenv", "APP_V"], _secrets(tmp_path),
                         stdout=subprocess.PIPE, stderr=err)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out.decode().strip() == VALUE
    assert any(path == log for path, _ in secrecy._files)
