#!/usr/bin/env bash
# Regenerates the hash-locked requirement files the two images install from:
#   images/dispatcher/requirements.txt      from dispatcher/pyproject.toml
#   images/node-installer/requirements.txt  from node-installer/pyproject.toml
#   images/build-requirements.txt           from images/build-requirements.in
# Run it after changing a dependency in either pyproject.toml; tests/images fails while a
# lock file disagrees with its pyproject.toml. It needs PyPI, nothing else, and writes
# only those three files (pip-tools lives in a cached virtualenv outside the checkout).
#
# Usage: images/lock.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${KATA_DEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kata-deploy}
tools_hash=$(sha256sum "$ROOT/images/lock-tools.txt" | cut -c1-12)
TOOLS="$CACHE/pip-tools-$tools_hash"

if [[ ! -f "$TOOLS/.complete" ]]; then
  echo "lock: installing pip-tools into $TOOLS"
  rm -rf "$TOOLS"
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q --disable-pip-version-check -r "$ROOT/images/lock-tools.txt"
  touch "$TOOLS/.complete"
fi

compile() { # compile OUTPUT INPUT
  echo "lock: $2 -> $1"
  (cd "$ROOT" && CUSTOM_COMPILE_COMMAND="images/lock.sh" "$TOOLS/bin/pip-compile" --quiet \
    --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
    --resolver=backtracking --output-file "$1" "$2")
}

compile images/dispatcher/requirements.txt dispatcher/pyproject.toml
compile images/node-installer/requirements.txt node-installer/pyproject.toml
compile images/build-requirements.txt images/build-requirements.in
