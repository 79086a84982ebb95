"""A Vault-compatible HTTP server for tests (never shipped), after reference/vault-api.md.

Modules: wire (envelope, errors, durations), http (parsing and writing), router (seal,
token, ACL, dispatch), state, acl, tokens, leases, kv, system (sys/*), database,
aws_iam, logins (approle, kubernetes), faults, control (/_test/), server
(VaultTestServer), fixtures (the pytest plugin). Run by hand with
`python -m tests.vaultserver --port 8200 --root-token root`.
"""
