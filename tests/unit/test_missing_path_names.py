"""A missing path is named after the variables that use it, whichever of the parallel
reads fails (entrypoint/plan/resolve.py).

Found by an audit: every path is read up front (``Generation.prefetch``), so a missing one
failed there, before the code that prefixes the variable's name (``Generation.value``),
and the message named no variable at all.
"""

from __future__ import annotations

import threading

import pytest

from entrypoint.errors import SecretNotFound
from entrypoint.plan.resolve import Generation, plan_environment, resolve_environment
from entrypoint.secret import Secret
from entrypoint.sources.base import Fetched, Source
from entrypoint.sources.registry import Sources

MISSING = "secret/app/nope"


class _Answers(Source):
    """Every path holds ``{"a": ..., "b": ...}`` but :data:`MISSING`; each read waits a
    little, so that several run at once."""

    name = "test"

    def __init__(self) -> None:
        self.wait = threading.Event()

    def describe(self, path: str) -> str:
        return "the test source"

    def fetch(self, path: str, version: int | None = None) -> Fetched:
        self.wait.wait(0.01)
        if path.startswith(MISSING):
            raise SecretNotFound(f"secret {path} not found in the test source",
                                 hint="expected a file")
        return Fetched(data={"a": Secret("value-a-123456"), "b": Secret("value-b-123456")},
                       kind="test")

    def issue(self, path: str, params: tuple[tuple[str, str], ...]) -> Fetched:
        return self.fetch(path)


def resolve(environ: dict[str, str], concurrency: int = 8) -> str:
    source = _Answers()
    sources = Sources({"vault": lambda: source, "consul": lambda: source}, {})
    with pytest.raises(SecretNotFound) as failure:
        resolve_environment(plan_environment(environ),
                            Generation(sources, concurrency=concurrency))
    assert failure.value.exit_code == 78
    return str(failure.value)


@pytest.mark.parametrize("concurrency", [1, 8])
def test_the_one_variable_that_asked_is_named(concurrency: int) -> None:
    env = {f"OK_{i}": f"vault:secret/app/p{i}#a" for i in range(12)}
    env["DB_PASSWORD"] = f"vault:{MISSING}#password"
    assert resolve(env, concurrency) == (
        f"variable DB_PASSWORD: vault:{MISSING}#password: secret {MISSING} not found in the "
        "test source (expected a file)")


def test_an_inline_reference_and_a_version() -> None:
    env = {"URL": f"postgresql://${{vault:{MISSING}#user}}@db", "A": "vault:secret/app/x#a"}
    assert resolve(env).startswith(f"variable URL: vault:{MISSING}#user: secret ")
    env = {"V": f"vault:{MISSING}#a?version=3"}
    assert resolve(env).startswith(f"variable V: vault:{MISSING}#a?version=3: secret ")


def test_every_user_of_the_path_is_named_or_counted() -> None:
    env = {"C": f"vault:{MISSING}#c", "A": f"vault:{MISSING}#a",
           "B": f"x${{vault:{MISSING}#b}}", "OTHER": "vault:secret/app/x#a"}
    assert resolve(env).startswith(f"variables A, B, C: vault:{MISSING}: secret ")
    env["D"] = f"vault:{MISSING}#d"
    assert resolve(env).startswith(f"variable A and 3 more: vault:{MISSING}: secret ")


def test_another_version_of_the_path_is_another_read() -> None:
    env = {"NEW": f"vault:{MISSING}#a?version=2", "OLD": f"vault:{MISSING}#a?version=1"}
    # Both are missing: the first in key order fails, and is named alone.
    assert resolve(env).startswith(f"variable OLD: vault:{MISSING}#a?version=1: ")


def test_a_writes_parameter_values_are_not_shown() -> None:
    env = {"CERT": f"vault:{MISSING}#certificate?write&common_name=cn-Secretish-9876"}
    message = resolve(env)
    assert message.startswith(
        f"variable CERT: vault:{MISSING}#certificate?write&common_name=…: secret ")
    assert "cn-Secretish-9876" not in message
