#!/usr/bin/env bash
# Builds the runtime virtualenv of one kata-deploy program. It is the only recipe: both
# Dockerfiles RUN it in their builder stage, and tests/images runs it unchanged on the
# host to check the image's entry point, so the two can never drift apart.
#
# What it must not do: put a build tool (pip, setuptools, wheel) into the virtualenv,
# install anything not locked by hash, build anything from source, or write into the
# program's own directory.
#
# Usage: images/build-venv.sh PROGRAM_DIR REQUIREMENTS VENV
#   PROGRAM_DIR   dispatcher or node-installer (pyproject.toml and src/)
#   REQUIREMENTS  its hash-locked runtime requirements (images/<program>/requirements.txt);
#                 a prune.txt next to it lists site-packages paths the program never
#                 imports, deleted after the install
#   VENV          the virtualenv to create; must not exist yet (/opt/venv in the images)
# Environment:
#   PYTHON        the interpreter the virtualenv runs on (default /usr/bin/python3, which
#                 is what both final stages provide at the same path)
set -euo pipefail

if [[ $# -ne 3 ]]; then
  echo "usage: $0 PROGRAM_DIR REQUIREMENTS VENV" >&2
  exit 2
fi
program=$1 requirements=$2 venv=$3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-/usr/bin/python3}

[[ -f "$program/pyproject.toml" ]] || { echo "build-venv: no pyproject.toml in '$program'" >&2; exit 2; }
[[ -f "$requirements" ]] || { echo "build-venv: requirements file '$requirements' not found" >&2; exit 2; }
[[ ! -e "$venv" ]] || { echo "build-venv: '$venv' already exists; remove it first" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pip_common=(--disable-pip-version-check --no-input)
# Only wheels, only the locked files: a sdist or an unhashed download is an error.
pip_locked=(--require-hashes --no-deps --only-binary=:all:)

echo "build-venv: build tools (pinned pip and setuptools) in a throwaway virtualenv"
"$python" -m venv "$work/tools"
tools="$work/tools/bin/python"
"$tools" -m pip install "${pip_common[@]}" -q "${pip_locked[@]}" -r "$here/build-requirements.txt"

echo "build-venv: wheel of $program"
cp -r "$program" "$work/program"
rm -rf "$work/program/build" "$work/program"/src/*.egg-info
"$tools" -m pip wheel "${pip_common[@]}" -q --no-deps --no-build-isolation --no-index \
  --wheel-dir "$work/wheels" "$work/program"

echo "build-venv: runtime virtualenv $venv (no pip inside)"
"$python" -m venv --without-pip "$venv"
target=("$tools" -m pip --python "$venv/bin/python")
"${target[@]}" install "${pip_common[@]}" -q --no-compile "${pip_locked[@]}" -r "$requirements"
"${target[@]}" install "${pip_common[@]}" -q --no-compile --no-deps --no-index "$work"/wheels/*.whl
# The lock must be complete: every dependency of every installed distribution present.
"${target[@]}" check

site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
prune="$(dirname "$requirements")/prune.txt"
if [[ -f "$prune" ]]; then
  while read -r path; do
    path=${path%%#*}; path=${path//[[:space:]]/}
    [[ -n "$path" ]] || continue
    if [[ "$path" == *..* || ! -e "$site/$path" ]]; then
      echo "build-venv: $prune: '$path' is not in site-packages (stale entry?)" >&2
      exit 1
    fi
    rm -rf "${site:?}/$path"
  done <"$prune"
fi

# direct_url.json only records the throwaway wheel path above: drop it so the tree is
# the same on every build.
rm -f "$venv"/lib/python3*/site-packages/*.dist-info/direct_url.json
# Bytecode now, validated by source hash rather than mtime, so the image never needs to
# write a .pyc (read-only root filesystem, PYTHONDONTWRITEBYTECODE=1) and the result does
# not depend on when the files were copied.
"$venv/bin/python" -m compileall -q -j 0 --invalidation-mode unchecked-hash "$venv/lib" >/dev/null
echo "build-venv: done: $(du -sh "$venv" | cut -f1) in $venv"
