"""``entrypoint render``: resolve once, render the file templates, print the app's
environment (``--format env|dotenv|json``, values hidden unless ``--reveal``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from entrypoint.config.model import Config


def render(config: Config, env: Mapping[str, str], log: logging.Logger, *, reveal: bool,
           fmt: str) -> int:
    import json

    from entrypoint.plan.resolution import Runtime

    runtime = Runtime(config, env, log)
    try:
        resolution = runtime.resolve()
        from entrypoint.commands.run import render_outputs

        render_outputs(config, runtime, resolution)
        raw = {name: value.reveal() for name, value in sorted(resolution.managed.items())}
        shown = raw if reveal else {name: str(resolution.managed[name]) for name in raw}
        if fmt == "json":
            output = json.dumps(shown, indent=2, sort_keys=True)
        else:
            from entrypoint.render.dotenv import lines

            # Before keep(): a value the format cannot carry fails with nothing kept.
            output = "\n".join(lines(raw, fmt, reveal=reveal))
        # An init container renders credentials for an app that starts after us: what was
        # fetched must outlive this process (their TTL bounds them).
        for source in runtime.sources.built().values():
            source.keep_on_close()
    finally:
        runtime.close()
    if output:
        print(output)
    return 0
