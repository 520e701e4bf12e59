#!/usr/bin/env bash
# Builds both images from images/*/Dockerfile with buildah (no Docker engine needed),
# from the repository root as context, and optionally pushes them to a registry.
#
#   localhost/kata-dispatcher:TAG   images/dispatcher/Dockerfile
#   localhost/kata-installer:TAG    images/node-installer/Dockerfile
#
# --bases local builds (or reuses) the local stand-ins of hack/base-images.sh and passes
# them as DEBIAN_BASE/PYTHON_BASE; --bases pinned keeps the Dockerfiles' digest-pinned
# bases, which buildah pulls. --payload picks the installer's KATA_PAYLOAD stage. Builds
# use `--layers`, so an unchanged rebuild is served from cache in seconds. buildah keeps
# everything under $KATA_DEPLOY_CACHE/buildah (hack/buildah-lib.sh).
#
# --format docker: in its default OCI format buildah 1.28 ignores SHELL, so RUN would use
# /bin/sh instead of the Dockerfiles' `bash -euo pipefail`.
#
# TLS to PyPI: when the host has a CA bundle (KATA_BUILD_CA, default
# /etc/ssl/certs/ca-certificates.crt), every RUN sees a read-only HOME (/root, bind
# mounted with --volume) holding only that bundle, a pip.conf naming it
# (.config/pip/pip.conf, `cert = ...`) and the mount point of the Dockerfiles' pip cache.
# pip in the builder stage then trusts what this host trusts, the Dockerfiles do not know
# about it, and nothing of it lands in a layer: /root exists in every Debian base, so the
# mount adds no path (a --volume onto a path the image lacks leaves an empty file behind).
#
# What it must not do: edit the Dockerfiles' instructions or assemble an image by any
# other means than building its Dockerfile; write outside the project's cache.
#
# Usage: hack/build-images.sh [--bases pinned|local] [--payload release|synthetic]
#          [--tag TAG] [--push REGISTRY] [--report FILE] [--pause]
#   --bases     default $KATA_IMAGE_BASES or pinned
#   --payload   default $KATA_PAYLOAD or release
#   --tag       default $KATA_IMAGE_TAG or dev
#   --push      push both images to REGISTRY/kata-dispatcher:TAG, REGISTRY/kata-installer:TAG
#               (plain HTTP or unverified TLS, e.g. 127.0.0.1:5000), and with local bases
#               the bases too, as REGISTRY/kata-deploy-base/...
#   --pause-only  build (and push) nothing but the pause image below
#   --pause     also build the local cluster's pod sandbox image (tests/cluster/images/pause:
#               a static Go program, compiled here, then its Dockerfile) as
#               localhost/pause:kata-deploy-test, pushed as REGISTRY/pause:kata-deploy-test
#   --report    write one tab-separated line per image: repository (kata-dispatcher, ...),
#               local reference, pushed reference, pushed digest, size in bytes,
#               build seconds, push seconds (tests/images/build.py reads it)
# Build args from the environment: VERSION (default: the chart's version), REVISION
# (default: git HEAD, "-dirty" with local changes), CREATED (default: HEAD's commit time).
set -euo pipefail
PROG=build-images
# shellcheck source=hack/buildah-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/buildah-lib.sh"

usage() { sed -n '/^# Usage:/,/^set -euo/{ /^set -euo/d; s/^# \{0,1\}//; p; }' "$0" >&2; exit 2; }

bases=${KATA_IMAGE_BASES:-pinned}
payload=${KATA_PAYLOAD:-release}
tag=${KATA_IMAGE_TAG:-dev}
registry=""
report=""
with_pause="" pause_only=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --bases) bases=${2:?}; shift 2 ;;
    --payload) payload=${2:?}; shift 2 ;;
    --tag) tag=${2:?}; shift 2 ;;
    --push) registry=${2:?}; shift 2 ;;
    --report) report=${2:?}; shift 2 ;;
    --pause) with_pause=1; shift ;;
    --pause-only) with_pause=1 pause_only=1; shift ;;
    -h|--help) usage ;;
    *) echo "$PROG: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ $bases == pinned || $bases == local ]] || die "--bases must be pinned or local, not '$bases'"
[[ $payload == release || $payload == synthetic ]] || die "--payload must be release or synthetic, not '$payload'"
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "'$tag' is not a valid image tag"
[[ $(id -u) -eq 0 ]] || die "buildah's chroot isolation needs root"
need buildah git

cd "$ROOT"
version=${VERSION:-$(awk '$1 == "version:" { print $2; exit }' helm-chart/kata-deploy/Chart.yaml)}
revision=${REVISION:-$(git rev-parse HEAD)$([[ -z "$(git status --porcelain)" ]] || echo -dirty)}
created=${CREATED:-$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ)}

exec 8>"$BUILDAH_STATE/build-images.lock"
flock 8

common=(--format docker --isolation chroot --network host --layers
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "CREATED=$created")
ca=${KATA_BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}
if [[ -f "$ca" ]]; then
  home="$BUILDAH_STATE/build-home"
  mkdir -p "$home/.config/pip" "$home/.cache/pip"
  cmp -s "$ca" "$home/.config/pip/ca.crt" || cp "$ca" "$home/.config/pip/ca.crt"
  printf '[global]\ncert = /root/.config/pip/ca.crt\n' >"$home/.config/pip/pip.conf"
  common+=(--volume "$home:/root:ro")
fi
dispatcher_args=() installer_args=(--build-arg "KATA_PAYLOAD=$payload")
if [[ $bases == local ]]; then
  [[ -n $pause_only ]] || bash "$ROOT/hack/base-images.sh"
  common+=(--pull=never)
  dispatcher_args+=(--build-arg "DEBIAN_BASE=$BASE_DEBIAN" --build-arg "PYTHON_BASE=$BASE_PYTHON")
  installer_args+=(--build-arg "DEBIAN_BASE=$BASE_DEBIAN")
else
  common+=(--pull=true)
fi
say "bases: $bases, installer payload: $payload, VERSION=$version REVISION=$revision CREATED=$created"

declare -A built_s=() pushed_s=() pushed_ref=() pushed_digest=()
names=(kata-dispatcher kata-installer)
[[ -z $pause_only ]] || names=()

build() {
  local name=$1 dockerfile=$2 t0=$EPOCHREALTIME
  shift 2
  step "buildah bud $dockerfile -> localhost/$name:$tag" "$LOGS/$name.log" \
    bh bud "${common[@]}" "$@" -f "$dockerfile" -t "localhost/$name:$tag" .
  built_s[$name]=$(elapsed "$t0")
}
if [[ -z $pause_only ]]; then
  build kata-dispatcher images/dispatcher/Dockerfile "${dispatcher_args[@]}"
  build kata-installer images/node-installer/Dockerfile "${installer_args[@]}"
fi

PAUSE=localhost/pause:kata-deploy-test
if [[ -n $with_pause ]]; then
  need go
  ctx="$BUILDAH_STATE/pause-context" t0=$EPOCHREALTIME
  rm -rf "$ctx" && mkdir -p "$ctx"
  step "go build tests/cluster/images/pause" "$LOGS/pause-go.log" \
    env CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod go build -C "$ROOT/tests/cluster/images/pause" \
    -trimpath -ldflags "-s -w" -o "$ctx/pause" .
  cp "$ROOT/tests/cluster/images/pause/Dockerfile" "$ctx/Dockerfile"
  step "buildah bud tests/cluster/images/pause -> $PAUSE" "$LOGS/pause.log" \
    bh bud --format docker --isolation chroot --layers -t "$PAUSE" "$ctx"
  built_s[$PAUSE]=$(elapsed "$t0")
fi

# push LOCAL REMOTE-PATH: push to $registry, remember the time and digest under LOCAL.
push() {
  local src=$1 dest="$registry/$2" t0=$EPOCHREALTIME digest="$BUILDAH_STATE/tmp/digest"
  local log="$LOGS/push-${2//[\/:]/_}.log"
  step "buildah push $src -> $dest" "$log" \
    bh push --tls-verify=false --digestfile "$digest" "$src" "docker://$dest"
  pushed_s[$src]=$(elapsed "$t0")
  pushed_ref[$src]=$dest
  pushed_digest[$src]=$(<"$digest")
}
if [[ -n $registry ]]; then
  for name in "${names[@]}"; do push "localhost/$name:$tag" "$name:$tag"; done
  if [[ -n $with_pause ]]; then
    push "$PAUSE" "${PAUSE#localhost/}"
    names+=("$PAUSE")
  fi
  if [[ $bases == local && -z $pause_only ]]; then
    for base in "$BASE_DEBIAN" "$BASE_PYTHON"; do push "$base" "${base#localhost/}"; done
    names+=("$BASE_DEBIAN" "$BASE_PYTHON")
  fi
fi

[[ -z $report ]] || : >"$report"
printf '%-52s %9s %8s %8s  %s\n' IMAGE SIZE BUILD PUSH PUSHED
for name in "${names[@]}"; do
  src=$name; [[ $src == localhost/* ]] || src="localhost/$name:$tag"
  repo=${src#localhost/}; repo=${repo%:*}
  size=$(image_size "$src")
  build_time=${built_s[$name]:-} push_time=${pushed_s[$src]:-}
  printf '%-52s %6.1f MB %8s %8s  %s\n' "$src" "$(awk -v b="$size" 'BEGIN { print b / 1e6 }')" \
    "${build_time:+${build_time}s}" "${push_time:+${push_time}s}" \
    "${pushed_ref[$src]:-}${pushed_digest[$src]:+@${pushed_digest[$src]}}"
  [[ -z $report ]] || printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$repo" "$src" \
    "${pushed_ref[$src]:-}" "${pushed_digest[$src]:-}" "$size" "${build_time:-0}" "${push_time:-0}" >>"$report"
done
say "done"
