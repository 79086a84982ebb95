"""docs/configuration.md cannot drift from the code."""

from __future__ import annotations

import re

from entrypoint import errors
from entrypoint.cli import build_parser
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
    for sub in ("run", "render", "check", "rotate"):
        for action in build_parser(sub)._actions:
            for flag in action.option_strings:
                if flag in ("-h",):
                    continue
                assert f"`{flag}" in text, f"{sub} {flag} is not in docs/configuration.md"


def test_every_reference_form_is_documented() -> None:
    text = docgen.DOC.read_text()
    for form in ("vault:PATH#KEY", "vault:PATH#KEY?version=N", "consul:KEY", "file:PATH",
                 "file:PATH#KEY", "${vault:PATH#KEY}", "\\vault:", "$${vault:"):
        assert form in text
