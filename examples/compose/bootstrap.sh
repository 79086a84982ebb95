#!/bin/sh
# bootstrap.sh: give the dev Vault what production's Vault has, with the Vault CLI.
#
# docker-compose.yml runs it once in the hashicorp/vault image, after Vault and
# PostgreSQL are healthy, with VAULT_ADDR and VAULT_TOKEN (the dev root token) set.
# It is safe to run again against the same Vault. To try it by hand against the compose
# stack's Vault, from the host:
#
#   VAULT_ADDR=http://127.0.0.1:8200 VAULT_TOKEN=root PGHOST=postgres \
#       PGPASSWORD=... POLICY_FILE=examples/compose/app-policy.hcl TOKEN_FILE=./app-token \
#       sh examples/compose/bootstrap.sh
#
# PGHOST is the database's address as Vault (and the app) reach it, not as this shell
# does: Vault dials it for the database engine. In the stack that is `postgres`;
# 127.0.0.1 would be Vault's own container.
#
# Every value below is for local development only.
set -eu

: "${VAULT_ADDR:?set VAULT_ADDR}" "${VAULT_TOKEN:?set VAULT_TOKEN}"
PGHOST="${PGHOST:-postgres}"
PGPORT="${PGPORT:-5432}"
PGDATABASE="${PGDATABASE:-app}"
PGUSER="${PGUSER:-postgres}"
PGPASSWORD="${PGPASSWORD:?set PGPASSWORD, the password of PGUSER}"
DB_DEFAULT_TTL="${DB_DEFAULT_TTL:-1h}"   # try DB_MAX_TTL=3m to watch a rotation
DB_MAX_TTL="${DB_MAX_TTL:-24h}"
POLICY_FILE="${POLICY_FILE:-/bootstrap/app-policy.hcl}"
TOKEN_FILE="${TOKEN_FILE:-/run/vault-token/app-token}"

# 1. Static secrets. Dev mode mounts KV v2 at secret/ already.
vault kv put secret/app/db host="$PGHOST" port="$PGPORT" name="$PGDATABASE"
vault kv put secret/app/api token=dev-api-token endpoint=https://api.example.test

# 2. Dynamic database credentials: the database engine, a connection, a role.
vault secrets list -format=json | grep -q '"database/"' || vault secrets enable database
vault write database/config/app \
    plugin_name=postgresql-database-plugin \
    connection_url="postgresql://{{username}}:{{password}}@${PGHOST}:${PGPORT}/${PGDATABASE}?sslmode=disable" \
    username="$PGUSER" \
    password="$PGPASSWORD" \
    allowed_roles=app
vault write database/roles/app \
    db_name=app \
    creation_statements="CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT CONNECT ON DATABASE \"${PGDATABASE}\" TO \"{{name}}\";" \
    default_ttl="$DB_DEFAULT_TTL" \
    max_ttl="$DB_MAX_TTL"

# 3. The app's policy (the same as production's) and a token with it, for token auth.
#    In production the auth/aws role "app" attaches this policy instead (docs/aws-iam.md).
vault policy write app "$POLICY_FILE"
vault token create -policy=app -period=24h -field=token > "$TOKEN_FILE"
chmod 0600 "$TOKEN_FILE"
echo "bootstrap: done; the app's token is in $TOKEN_FILE"
