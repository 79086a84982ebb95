"""docs/configuration.md cannot drift from the code."""

from __future__ import annotations

import ast
import re

import pytest

from entrypoint import errors
from entrypoint.cli import SUBCOMMANDS, build_parser
from tests.helpers import docgen


def test_settings_table_matches_the_settings() -> None:
    text = docgen.DOC.read_text()
    assert f"{docgen.BEGIN}\n{docgen.table()}\n{docgen.END}" in text, (
        "docs/configuration.md is stale: run python -m tests.helpers.docgen")


def test_every_exit_code_is_documented() -> None:
    text = docgen.DOC.read_text()
    codes = {v for k, v in vars(errors).items() if k.startswith("EX_")}
    for code in codes:
        assert re.search(rf"^\| {code} \|", text, re.M), f"exit code {code} is not documented"


def test_every_flag_of_every_subcommand_is_documented() -> None:
    text = docgen.DOC.read_text()
    for sub in SUBCOMMANDS:
        for action in build_parser(sub)._actions:
            for flag in action.option_strings:
                if flag in ("-h",):
                    continue
                # The whole flag: `--issue` is not documented by `--issue-cache-dir`.
                assert re.search(rf"`{re.escape(flag)}(?![\w-])", text), (
                    f"{sub} {flag} is not in docs/configuration.md")


def test_every_reference_form_is_documented() -> None:
    """Each form opens a row of the table of reference forms."""
    text = docgen.DOC.read_text()
    table = text.split("## Reference forms", 1)[1].split("\n## ", 1)[0]
    for form in ("vault:PATH#KEY", "vault:PATH#KEY?version=N",
                 "vault:PATH#KEY?write&NAME=VALUE", "consul:KEY", "file:PATH", "file:PATH#KEY",
                 "transit:KEY#CIPHERTEXT", "vault:v1:CIPHERTEXT", "${vault:PATH#KEY}",
                 "\\vault:", "$${vault:"):
        assert re.search(rf"^\| `…?{re.escape(form)}", table, re.M), (
            f"docs/configuration.md's reference forms do not show {form}")


def _variables_read() -> dict[str, str]:
    """Variables entrypoint/ reads by name from an environment mapping (``environ.get("X")``,
    ``env["X"]``, ``"X" in environ``), ENTRYPOINT_* (the settings) aside: name -> where."""
    root = docgen.DOC.parents[1]
    name = re.compile(r"(?!ENTRYPOINT_)[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")
    found: dict[str, str] = {}
    for path in sorted((root / "entrypoint").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            key: ast.expr | None = None
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("get", "getenv", "pop") and node.args):
                key = node.args[0]
            elif isinstance(node, ast.Subscript):
                key = node.slice
            elif isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.In | ast.NotIn):
                key = node.left
            if (isinstance(key, ast.Constant) and isinstance(key.value, str)
                    and name.fullmatch(key.value)):
                line = getattr(node, "lineno", 0)
                found.setdefault(key.value, f"{path.relative_to(root)}:{line}")
    return found


def test_every_standard_variable_read_is_in_the_standard_variables_table() -> None:
    text = docgen.DOC.read_text()
    section = text.split("## Standard variables honoured as-is", 1)[1].split("\n#", 1)[0]
    read = _variables_read()
    assert {"VAULT_ADDR", "VAULT_TOKEN", "CONSUL_HTTP_ADDR", "VAULT_ROLE_ID"} <= set(read)
    missing = [f"{where}: {name}" for name, where in sorted(read.items())
               if f"`{name}`" not in section]
    assert not missing, ("docs/configuration.md's 'Standard variables honoured as-is' does not "
                         "name:\n" + "\n".join(missing))


@pytest.mark.parametrize("columns", ["60", "200", "", "junk"])
def test_help_is_wrapped_as_argparse_wraps_it(columns: str, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    # The parser's formatter finds the width without shutil (cli._columns): the help must
    # read exactly as argparse's own formatter, which asks shutil, lays it out.
    import argparse

    monkeypatch.setenv("COLUMNS", columns)
    for sub in SUBCOMMANDS:
        ours = build_parser(sub)
        theirs = build_parser(sub)
        theirs.formatter_class = argparse.HelpFormatter
        assert ours.format_help() == theirs.format_help(), sub
