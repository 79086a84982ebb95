"""A Consul key changed on a real Consul agent (ACLs on, default deny) reaches the app,
through a blocking query made with the app's read-only token, as one restart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers.cli import REPO, clean_env, start_cli
from tests.helpers.journal import events, wait_for
from tests.realservers.consul_agent import ConsulAgent

PROBE = str(REPO / "tests/helpers/app_probe.py")


def test_consul_change_restarts_the_app_with_the_new_value(consul_acl_agent: ConsulAgent,
                                                           tmp_path: Path) -> None:
    token = consul_acl_agent.create_token('key_prefix "config/app/" { policy = "read" }')
    consul_acl_agent.put("config/app/feature_x", "off")
    journal = tmp_path / "journal"
    env = clean_env({**consul_acl_agent.env(token), "ENTRYPOINT_CONTROL_SOCKET": "",
                     "FEATURE_X": "consul:config/app/feature_x"})
    proc = start_cli(["--wait-min", "100ms", "--wait-max", "1s", "--",
                      sys.executable, PROBE, str(journal), "FEATURE_X"],
                     env, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(journal, "start")[0]["env"] == {"FEATURE_X": "off"}
        consul_acl_agent.wait_for_blocked_queries(1)
        consul_acl_agent.put("config/app/feature_x", "on")
        starts = wait_for(journal, "start", 2)
        assert starts[1]["env"] == {"FEATURE_X": "on"}
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert len(events(journal, "start")) == 2
    assert "consul:config/app/feature_x changed" in stderr
