"""Template errors never show a value, even transformed (issue 14, item 4), fuzzed.

Python's and Jinja's messages quote what they were given: escaped by ``repr`` (a PEM
key through ``filesizeformat``), upper-cased, reversed, used as a key, a path or a
variable name. Hypothesis draws values full of quotes, backslashes and newlines and a
template that mistreats one; the error raised must hold no form of the value. (The same
attacks through the real CLI: tests/e2e/test_templates.py::test_no_secret_value_in_any_error.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entrypoint.errors import EntrypointError
from entrypoint.plan.resolve import Generation
from entrypoint.render import sandbox
from entrypoint.sources.base import Fetched, Source, to_secrets
from entrypoint.sources.registry import Sources

TRANSFORMS = ["", "| upper", "| lower", "| reverse | join", "| title", "| replace('a', 'b')",
              "~ 'x'", "| trim", "| b64encode"]
MISUSES = [
    "{{{{ (secret('kv/app/s').v {t}) | filesizeformat }}}}",
    "{{{{ {{}}[secret('kv/app/s').v {t}] }}}}",
    "{{{{ secret(secret('kv/app/s').v {t}) }}}}",
    "{{{{ env(secret('kv/app/s').v {t}) }}}}",
    "{{{{ consul(secret('kv/app/s').v {t}) }}}}",
    "{{{{ file(secret('kv/app/s').v {t}) }}}}",
    "{{{{ {{}} | attr(secret('kv/app/s').v {t}) }}}}",
    "{{{{ (secret('kv/app/s').v {t}).nope }}}}",
    "{{{{ secret('kv/app/s')[secret('kv/app/s').v {t}] }}}}",
    "{{{{ (secret('kv/app/s').v {t}) | b64decode }}}}",
    "{{{{ (secret('kv/app/s').v {t}) | int + {{}} }}}}",
    "{{{{ range(secret('kv/app/s').v {t}) }}}}",
]
ALPHABET = st.sampled_from([*"\"'\\\n\t/:é{}%", "ab", "Q9", "-----BEGIN KEY-----\n"])


class OneValue(Source):
    name = "vault"

    def __init__(self, value: str) -> None:
        self.value = value

    def fetch(self, path: str, version: int | None = None) -> Fetched:
        from entrypoint.errors import SecretNotFound

        if path != "kv/app/s":
            raise SecretNotFound(f"secret {path} not found in the test source")
        return Fetched(data=to_secrets({"v": self.value}), kind="local")

    def describe(self, path: str) -> str:
        return "the test source"

    def close(self) -> None:
        pass


def forms(value: str) -> set[str]:
    out = {value, repr(value)[1:-1], json.dumps(value)[1:-1], value.upper(), value.lower(),
           value.title(), value[::-1], value.replace("a", "b"), value.strip()}
    out.update(line for line in value.splitlines())
    return {f for f in out if len(f) >= 6}


def render_error(source: str, value: str, tmp_path: Path) -> str:
    held = OneValue(value)
    generation = Generation(Sources({"vault": lambda: held}, {}))
    where = sandbox.Located("t.j2", is_file=True, folder=tmp_path)
    scope = sandbox.Scope(generation, {}, (tmp_path,), source)
    env = sandbox.make_environment()
    try:
        sandbox.render(sandbox.compile_template(env, source, where), source, where, scope)
    except EntrypointError as exc:
        return str(exc)
    return ""  # a combination that works (b64encode then b64decode): nothing to show


@settings(max_examples=200, deadline=None)
@given(core=st.lists(ALPHABET, min_size=2, max_size=10).map("".join),
       misuse=st.sampled_from(MISUSES), transform=st.sampled_from(TRANSFORMS))
def test_no_form_of_a_value_is_in_a_template_error(core: str, misuse: str, transform: str,
                                                    tmp_path_factory: pytest.TempPathFactory
                                                    ) -> None:
    value = f"Zk{core}Secret-Vv58"
    source = misuse.format(t=transform)
    message = render_error(source, value, tmp_path_factory.getbasetemp())
    assert not message or message.startswith("t.j2:1: "), message
    for form in forms(value):
        assert form not in message, (source, message)
