#!/usr/bin/env bash
# Provide the real `vault` and `consul` binaries the tests run against.
#
# Usage: tests/realservers/get-binaries.sh [vault] [consul]     (no name: both)
#        eval "$(tests/realservers/get-binaries.sh)"            (sets VAULT_BIN, CONSUL_BIN)
#
# For each name, the first that applies:
#   1. $VAULT_BIN / $CONSUL_BIN, if it names an executable;
#   2. `vault` / `consul` on PATH (many users have the Vault CLI);
#   3. the binary built from our tiny main module in tests/realservers/<name>/ (it requires
#      the released module: `go install hashicorp/<name>@vX` refuses their replace lines),
#      cached outside the repository as ${XDG_CACHE_HOME:-~/.cache}/entrypoint-tests/bin/
#      <name>-<version>, the version read from that go.mod. Built once; later runs only
#      check the file, so a cached run takes well under a second.
# Each binary's own `version` line goes to stderr (the test log); stdout gets one
# NAME_BIN=path line per name, for `eval`. tests/realservers/binaries.py applies the
# same rule from Python and calls this script to build what is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/entrypoint-tests/bin"

log() { printf 'get-binaries: %s\n' "$*" >&2; }

pinned_version() {  # the release tests/realservers/$1/go.mod requires, without the "v"
  local version
  version="$(awk -v mod="github.com/hashicorp/$1" '
      $1 == "require" && $2 == mod { print $3; exit }
      $1 == mod { print $2; exit }' "$here/$1/go.mod")"
  if [[ -z "$version" ]]; then
    log "tests/realservers/$1/go.mod requires no github.com/hashicorp/$1"
    return 1
  fi
  printf '%s\n' "${version#v}"
}

build() {  # build $1 at version $2 into $3 unless it is there
  local name="$1" version="$2" out="$3" started
  mkdir -p "$(dirname "$out")"
  # One build at a time per binary: a second caller waits, then finds the file.
  exec 9>"$out.lock"
  flock 9
  if [[ -x "$out" ]]; then
    exec 9>&-
    return 0
  fi
  if ! command -v go >/dev/null 2>&1; then
    log "no $name binary and no Go toolchain to build one: install Go (1.25.5 or later)," \
        "put $name on PATH or set ${name^^}_BIN"
    return 1
  fi
  log "building $name $version with $(go version) (once; a cold build downloads the" \
      "modules and takes many minutes on 2 cores)"
  started=$SECONDS
  # -trimpath/-s -w: a smaller binary and no local paths in it. Written under a temporary
  # name and renamed, so an interrupted build never leaves a file that looks complete.
  (cd "$here/$name" && go build -trimpath -ldflags "-s -w" -o "$out.partial" .)
  mv -f "$out.partial" "$out"
  log "built $out in $((SECONDS - started))s"
  exec 9>&-
}

provide() {  # print NAME_BIN=path for $1, building it if nothing else provides it
  local name="$1" variable path version
  variable="${name^^}_BIN"
  path="${!variable:-}"
  if [[ -n "$path" ]]; then
    if [[ ! -x "$path" ]]; then
      log "$variable=$path is not an executable file"
      return 1
    fi
    log "$name from $variable: $path"
  elif path="$(command -v "$name")"; then
    log "$name from PATH: $path"
  else
    version="$(pinned_version "$name")"
    path="$cache/$name-$version"
    if [[ -x "$path" ]]; then
      log "$name $version cached: $path"
    else
      build "$name" "$version" "$path"
    fi
  fi
  log "$name version: $("$path" version 2>&1 | head -n 1)"
  printf '%s=%q\n' "$variable" "$path"
}

names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(vault consul)
for name in "${names[@]}"; do
  case "$name" in
    vault | consul) provide "$name" ;;
    *) log "unknown binary $name (expected vault or consul)"; exit 2 ;;
  esac
done
