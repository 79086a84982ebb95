#!/usr/bin/env bash
# Quickstart on the embedded default: a local secrets directory, no server.
# The sample app prints which variables it received, values masked.
#
# Everything is installed into a virtual environment of its own (.venv at the top of
# the clone, or QUICKSTART_VENV): never into the Python it was started with, which may
# be the system's (an externally-managed Python refuses `pip install`), a pyenv or
# conda interpreter shared with other projects, or root's.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
venv=${QUICKSTART_VENV:-.venv}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "quickstart: $python is missing or older than 3.11; set PYTHON=/path/to/python3.11+" >&2
    exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
    echo "--- creating a virtual environment in $venv"
    if ! "$python" -m venv "$venv"; then
        rm -rf "$venv"  # a half-made venv (no pip) would be reused next time
        echo "quickstart: '$python -m venv' failed; on Debian or Ubuntu install it with" \
             "'apt-get install python3-venv'" >&2
        exit 1
    fi
fi
echo "--- installing the entrypoint into $venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e .
PATH="$(cd "$venv/bin" && pwd):$PATH"
export PATH

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
exec entrypoint -- python examples/sample_app.py
