"""The table of every setting: its name, type, default and meaning.

One name per setting serves three places: the flag ``--kill-timeout``, the variable
``ENTRYPOINT_KILL_TIMEOUT`` and the TOML key ``kill_timeout`` (inside ``[section]`` when
the setting has one). ``docs/configuration.md`` is checked against this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal[
    "str", "path", "bool", "int", "duration", "signal", "choice", "list", "fraction"
]


@dataclass(frozen=True)
class Setting:
    name: str
    kind: Kind
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    section: str | None = None
    secret: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def variable(self) -> str:
        return "ENTRYPOINT_" + self.name.upper()

    @property
    def toml_key(self) -> str:
        return f"{self.section}.{self.name}" if self.section else self.name


S = Setting

SETTINGS: tuple[Setting, ...] = (
    # Where config and secrets come from.
    S("config", "path", None, "TOML file with settings, templates and env templates"),
    S("local_secrets", "path", None,
      "directory of JSON/TOML files that answers vault: references without a server"),
    S("mode", "choice", "supervise",
      "supervise: stay resident, renew and rotate; exec: resolve once, then exec the app",
      choices=("supervise", "exec")),
    S("secrets", "list", [], "bulk export: every key under these paths becomes a variable"),
    S("secrets_prefix", "str", "", "prefix added to the names of bulk-exported variables"),
    S("secrets_upcase", "bool", True, "upper-case the names of bulk-exported variables"),
    S("secrets_sanitize", "bool", True,
      "replace characters not valid in a variable name with _ in bulk-exported names"),
    S("template", "list", [], "file template SRC:DEST[:PERMS]; repeatable"),
    S("template_allowed_dirs", "list", [],
      "folders, besides the template's and the config file's, that file() in templates may read"),
    S("template_timeout", "duration", 10.0,
      "longest one template may take to render, time spent fetching secrets not counted; "
      "0 turns the limit off"),
    S("template_max_bytes", "int", 16 * 1024 * 1024,
      "largest text one template may render, in bytes"),
    S("transit_mount", "str", "transit",
      "mount of Vault's transit engine that decrypts transit:KEY#CIPHERTEXT values"),
    S("transit_key", "str", None,
      "transit key that decrypts values written vault:v1:CIPHERTEXT (bank-vaults vault-env's "
      "transit key id); unset: such a value is a syntax error"),
    S("issue_cache_dir", "path", None,
      "folder where issued certificates (?write references, secret() with parameters) are "
      "kept so that a restart reuses a still-valid one instead of issuing; unset: every "
      "start issues"),
    S("template_error_on_refresh", "choice", "keep",
      "what a file template whose render fails after start does: keep its last good file "
      "and retry, or stop the app with the error (fatal); error_on_refresh in [[template]] "
      "overrides it", choices=("keep", "fatal")),
    S("pass_env", "list", [],
      "bootstrap variables (VAULT_TOKEN, ENTRYPOINT_*, ...) to keep in the app's environment"),
    # Vault.
    S("vault_auth", "choice", None,
      "how to log in to Vault; default: token when VAULT_TOKEN or a token file is set, "
      "else aws-iam", choices=("token", "aws-iam", "approle", "kubernetes")),
    S("vault_auth_mount", "str", None, "auth mount path (default: the method's name, e.g. aws)"),
    S("vault_role", "str", None, "Vault role to log in as"),
    S("vault_aws_header", "str", None, "value of the X-Vault-AWS-IAM-Server-ID header"),
    S("vault_aws_region", "str", None,
      "region of the STS endpoint to sign for (default: the global endpoint, us-east-1)"),
    S("vault_sts_endpoint", "str", None, "STS endpoint URL to sign for"),
    S("vault_token_file", "path", None, "file holding a Vault token (e.g. a Vault Agent sink)"),
    S("vault_approle_role_id", "str", None, "AppRole role_id"),
    S("vault_approle_secret_id", "str", None, "AppRole secret_id", secret=True),
    S("vault_approle_secret_id_file", "path", None, "file holding the AppRole secret_id"),
    S("vault_kubernetes_token_file", "path",
      "/var/run/secrets/kubernetes.io/serviceaccount/token",
      "service account token file for kubernetes auth"),
    S("vault_concurrency", "int", 8, "how many Vault reads run at once"),
    # Timing.
    S("startup_timeout", "duration", 60.0,
      "how long to retry an unreachable, sealed or rate-limiting server at start before exit 69"),
    S("poll_interval", "duration", 300.0, "static secret re-read interval (jittered)"),
    S("static_creds_poll_interval", "duration", 60.0,
      "database/static-creds re-read interval (jittered); also bounded by the role's ttl"),
    S("lease_check_interval", "duration", 30.0,
      "how often held leases are looked up to notice a revoke by ops (jittered); 0 disables"),
    S("renew_fraction", "fraction", 0.75,
      "renew a lease after this fraction of its duration (jittered)"),
    S("replace_fraction", "fraction", 0.8,
      "replace a lease that cannot be extended after this fraction of its remaining life"),
    S("revoke_grace", "duration", 30.0,
      "how long an old lease stays valid after the app runs on its successor"),
    S("on_expiry", "choice", "keep",
      "what to do when a lease expires while Vault is unreachable: keep the app running, "
      "or exit 69", choices=("keep", "exit")),
    S("revoke_on_exit", "bool", True, "revoke own leases and token on shutdown"),
    S("wait_min", "duration", 1.0, "quiet time after a change before acting", section="rotation"),
    S("wait_max", "duration", 5.0,
      "longest wait after a first change before acting", section="rotation"),
    S("splay", "duration", 0.0, "random delay before a restart or signal", section="rotation"),
    # The child.
    S("kill_timeout", "duration", 30.0, "how long to wait after the stop signal before SIGKILL"),
    S("stop_delay", "duration", 0.0,
      "drain delay: on SIGTERM/SIGINT the ready file goes first, the app gets its stop "
      "signal this much later (a second one skips the wait)"),
    S("stop_signal", "signal", "SIGTERM", "signal that asks the app to stop"),
    S("user", "str", None, "run the app as USER[:GROUP] (name or number)"),
    S("signal_group", "bool", True,
      "forward signals to the app's whole process group rather than the app alone"),
    S("rewrite_signal", "list", [],
      "rewrite a forwarded signal, FROM:TO (e.g. TERM:QUIT); TO none drops it"),
    S("success_exit_code", "list", [],
      "an exit status of the app to report as 0, e.g. 143 for a JVM stopped by SIGTERM "
      "(supervise mode)"),
    S("parent_death_signal", "signal", None,
      "signal the app gets if the entrypoint dies while it runs (matters when the "
      "entrypoint is not PID 1, e.g. under another init or a shell); none by default"),
    S("new_privileges", "bool", True,
      "false (--no-new-privileges, as docker's option) starts the app with no_new_privs: "
      "setuid and file-capability programs it runs then gain no privilege"),
    S("pass_fds", "list", [],
      "descriptors besides 0, 1 and 2 that the app inherits, e.g. 3 for socket activation; "
      "every other one is closed"),
    S("control_socket", "str", "auto",
      "unix socket on which 'entrypoint rotate' reaches the running entrypoint: auto (an "
      "abstract socket named after the container), a path, or @NAME for an abstract "
      "socket; empty turns it off"),
    # Operating it.
    S("ready_file", "path", None,
      "file created once the first values are resolved and rendered, removed at stop and "
      "while the app restarts (a readiness or startup probe tests it)"),
    S("metrics_listen", "str", None,
      "HOST:PORT serving Prometheus /metrics, /ready and /live (e.g. 127.0.0.1:9102); "
      "off by default"),
    # Output.
    S("log_format", "choice", "text", "log format", choices=("text", "json")),
    S("log_level", "choice", "info", "log level", choices=("debug", "info", "warning", "error")),
    S("debug", "bool", False, "show the traceback of the error that stops the entrypoint, "
      "in every mode and subcommand"),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
BY_VARIABLE: dict[str, Setting] = {s.variable: s for s in SETTINGS}
SECTIONS: frozenset[str] = frozenset(s.section for s in SETTINGS if s.section)
