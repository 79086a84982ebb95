"""A Vault-compatible HTTP server for tests (never shipped), after reference/vault-api.md.

Endpoints (all under /v1/):
  sys/health (GET/HEAD, every *code and *ok parameter), sys/seal-status, sys/mounts[/<p>],
  sys/auth[/<p>], sys/policies/acl/<name> (and sys/policy/<name>), sys/capabilities-self,
  sys/internal/ui/mounts/<path>, sys/leases/{renew,revoke,revoke-prefix,revoke-force,lookup}
  (and sys/renew, sys/revoke), sys/wrapping/{lookup,unwrap} plus X-Vault-Wrap-TTL;
  auth/token/{lookup-self,lookup,lookup-accessor,renew-self,renew,revoke-self,revoke,
  revoke-accessor,create,create-orphan};
  KV v1 (read/write/delete/list) and KV v2 (data ?version=N, patch, metadata, delete,
  undelete, destroy, config); database/{config,roles,creds,static-roles,static-creds,
  rotate-role,rotate-root}/<name> on a real PostgreSQL; auth/aws/{login,config/client,
  role/<name>} (IAM method against moto's STS), auth/approle/{login,role/...},
  auth/kubernetes/{login,role/<name>}.
Test controls: VaultTestServer methods (server.py) and unauthenticated /_test/ paths
(control.py). Run by hand: `python -m tests.vaultserver --port 8200 --root-token root`.

Modules: wire (envelope, errors, durations), http (parsing and writing), router (seal,
token, ACL, dispatch), state, acl, tokens, leases, wrapping, kv, system (sys/*), database
and postgres_sql, aws_iam and aws_sts, logins (approle, kubernetes), engines, faults,
control, server (VaultTestServer), fixtures (the pytest plugin).
"""
