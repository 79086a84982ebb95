# app-policy.hcl: what the app's Vault token may do. The same policy serves production,
# where the auth/aws role "app" attaches it (docs/aws-iam.md), and this compose stack,
# where bootstrap.sh gives the app a token with it: a path missing here fails locally
# exactly as it would in production.

# Static secrets (KV v2 at secret/: the API path has data/ in it).
path "secret/data/app/*" {
  capabilities = ["read"]
}

# Dynamic database credentials.
path "database/creds/app" {
  capabilities = ["read"]
}

# Give leases back: after a rotation's grace period and on shutdown (revoke_on_exit).
# Vault's default policy allows renewing and looking up leases, not revoking them.
path "sys/leases/revoke" {
  capabilities = ["update"]
}
