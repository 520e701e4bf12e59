# shellcheck shell=bash
# Shared by hack/base-images.sh and hack/build-images.sh (sourced, never run): where
# buildah keeps its state, the `bh` wrapper every buildah call goes through, and the
# progress and step helpers.
#
# What it must not do: let buildah or debootstrap touch anything outside the project's
# cache. Images, layers and lock files live under $CACHE/buildah (never
# /var/lib/containers or /run/containers); TMPDIR points there too, because buildah keeps
# its `RUN --mount=type=cache` directories and copy buffers under TMPDIR (/var/tmp by
# default); its own containers.conf moves the CNI lock out of /etc/cni. Left alone,
# buildah 1.28 still creates /var/lib/containers/cache (its blob-info cache, with no
# option to move it) and /etc/cni/net.d/cni.lock, so every buildah and debootstrap run
# goes through `guarded`: a private mount namespace in which /etc, /var and /run are
# read-only, except /var/tmp, which is $TMPDIR bind-mounted (some of buildah's copies
# write to /var/tmp whatever TMPDIR says). The blob-info cache then falls back to memory,
# and anything else that tried to write there would fail loudly instead of changing the
# machine. Mounts made inside
# (debootstrap's /proc in the new root, buildah's overlay mounts) end with the process.
#
# Usage (from a script in hack/):
#   . "$(dirname "${BASH_SOURCE[0]}")/buildah-lib.sh"; PROG=name
#   bh images                       # buildah with the project's storage, guarded
#   guarded CMD ...                 # CMD in a private mount namespace, /etc /var /run read-only
#   step "what" LOG cmd ...         # run cmd, output to LOG; on failure show its tail, exit 1

# shellcheck disable=SC2034 # ROOT, BASE_*: used by the scripts that source this file
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${KATA_DEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kata-deploy}
BUILDAH_STATE="$CACHE/buildah"
LOGS="$BUILDAH_STATE/logs"
export TMPDIR="$BUILDAH_STATE/tmp"
mkdir -p "$BUILDAH_STATE/root" "$BUILDAH_STATE/run" "$TMPDIR" "$LOGS"

# Names of the local stand-ins for the Dockerfiles' pinned bases (images/bases/).
# shellcheck disable=SC2034
BASE_DEBIAN=localhost/kata-deploy-base/debian:bookworm-minbase
# shellcheck disable=SC2034
BASE_PYTHON=localhost/kata-deploy-base/python3-nonroot:bookworm

PROG=${PROG:-$(basename "$0" .sh)}
START_REALTIME=$EPOCHREALTIME

# elapsed [SINCE]: seconds since SINCE (an $EPOCHREALTIME value; default: script start).
elapsed() { awk -v a="${1:-$START_REALTIME}" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
say() { printf '[%s %6ss] %s\n' "$PROG" "$(elapsed)" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$PROG" "$*" >&2; exit 1; }

cat >"$BUILDAH_STATE/containers.conf" <<CONF
# Written by hack/buildah-lib.sh for the project's buildah runs (CONTAINERS_CONF).
[network]
network_backend = "cni"
network_config_dir = "$BUILDAH_STATE/cni"
CONF

guarded() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  LIBMOUNT_UTAB="$BUILDAH_STATE/utab" CONTAINERS_CONF="$BUILDAH_STATE/containers.conf" \
    unshare --mount --propagation private -- /bin/bash -c '
      for d in /etc /var /run; do
        mount --rbind "$d" "$d" && mount -o remount,bind,ro "$d" || exit 125
      done
      mount --bind "$TMPDIR" /var/tmp || exit 125
      exec "$@"' guarded "$@"
}

bh() {
  guarded buildah --root "$BUILDAH_STATE/root" --runroot "$BUILDAH_STATE/run" --storage-driver overlay "$@"
}

# step WHAT LOG CMD...: run CMD with its output in LOG; say how long it took, or name the
# step, show the end of the log and exit.
step() {
  local what=$1 log=$2 t0=$EPOCHREALTIME
  shift 2
  say "$what (log: $log)"
  if ! "$@" >"$log" 2>&1; then
    tail -n 25 "$log" >&2
    die "$what failed after $(elapsed "$t0")s; full log: $log"
  fi
  say "$what: done in $(elapsed "$t0")s"
}

# image_size NAME: bytes of the image's layers, uncompressed (`buildah images` only
# prints a rounded figure): the sum of each layer's diff-size along its chain, read from
# the storage's own metadata.
image_size() {
  local id
  id=$(bh inspect --type image --format '{{.FromImageID}}' "$1") || return 1
  python3 - "$BUILDAH_STATE/root" "$id" <<'PY'
import json, pathlib, sys
root, image_id = pathlib.Path(sys.argv[1]), sys.argv[2]
images = json.loads((root / "overlay-images" / "images.json").read_text())
layers = {l["id"]: l for l in json.loads((root / "overlay-layers" / "layers.json").read_text())}
layer = next(i for i in images if i["id"] == image_id).get("layer")
total = 0
while layer:
    total += layers[layer].get("diff-size", 0)
    layer = layers[layer].get("parent")
print(total)
PY
}

need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "$tool is not installed: run 'bash hack/setup.sh apt-packages' (it installs buildah and debootstrap)"
  done
}
