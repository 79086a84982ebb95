#!/usr/bin/env bash
# Quickstart on the embedded default: a local secrets directory, no server.
# The sample app prints which variables it received, values masked.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e .

export ENTRYPOINT_LOCAL_SECRETS=examples/dev-secrets
export DB_USER='vault:kv/app/db#username'
export DB_PASSWORD='vault:kv/app/db#password'
export DATABASE_URL='postgresql://${vault:database/creds/app#username}:${vault:database/creds/app#password}@localhost/app'
export API_TOKEN='vault:kv/app/api#token'
export API_ENDPOINT='vault:kv/app/api#endpoint'
export GREETING='hello, twelve factors'

echo "--- what the app will get (entrypoint render):"
entrypoint render
echo "--- the app, run under the entrypoint:"
exec entrypoint -- python3 examples/sample_app.py
