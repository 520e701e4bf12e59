#!/usr/bin/env bash
# Builds the local stand-ins for the two pinned bases of images/*/Dockerfile, which live
# on docker.io and gcr.io and cannot be pulled here (no outside registry):
#   localhost/kata-deploy-base/debian:bookworm-minbase   for DEBIAN_BASE (debian:12-slim)
#   localhost/kata-deploy-base/python3-nonroot:bookworm  for PYTHON_BASE (distroless python3 nonroot)
# The first is `debootstrap --variant=minbase bookworm` from deb.debian.org, trimmed like
# the official slim images and packed with images/bases/debian/Dockerfile; the second is
# images/bases/python3-nonroot/Dockerfile on top of it. Both are for tests only.
#
# Cached: nothing is rebuilt while this script, images/bases/ and the image names are
# unchanged and both images are still in the project's buildah storage
# ($KATA_DEPLOY_CACHE/buildah, see hack/buildah-lib.sh). debootstrap's downloads are kept
# in $KATA_DEPLOY_CACHE/base-images/debs.
#
# What it must not do: touch the host outside the project's cache (debootstrap and
# buildah run `guarded`, hack/buildah-lib.sh: their mounts are private and end with
# them, /etc, /var and /run are read-only to them), or delete a root directory while
# something is still mounted inside it.
#
# Usage: hack/base-images.sh          (needs root, debootstrap and buildah; ~2.5 min cold)
set -euo pipefail
PROG=base-images
# shellcheck source=hack/buildah-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/buildah-lib.sh"

MIRROR=http://deb.debian.org/debian
SECURITY_MIRROR=http://deb.debian.org/debian-security
BASES="$CACHE/base-images"

[[ $(id -u) -eq 0 ]] || die "debootstrap and buildah's chroot isolation need root"
need debootstrap buildah tar unshare

key=$(
  cd "$ROOT"
  { cat hack/base-images.sh; echo "$BASE_DEBIAN $BASE_PYTHON"
    find images/bases -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-16
)
work="$BASES/$key"
stamp="$BASES/$key.images"
mkdir -p "$BASES/debs"
exec 9>"$BASES/.lock"
flock 9

cached() {
  [[ -f "$stamp" ]] || return 1
  local name id
  while read -r name id; do
    [[ "$(bh inspect --type image --format '{{.FromImageID}}' "$name" 2>/dev/null)" == "$id" ]] || return 1
  done <"$stamp"
}

# remove_tree DIR: rm -rf, refusing while anything is mounted at or below DIR.
remove_tree() {
  local dir=$1
  [[ -e "$dir" ]] || return 0
  if awk -v d="$(realpath "$dir")" '$2 == d || index($2, d "/") == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    die "something is still mounted under $dir (see /proc/mounts); unmount it, then re-run"
  fi
  rm -rf --one-file-system "$dir"
}

# slim ROOT: what the official slim images do to a fresh Debian root, and no host files.
slim() {
  local r=$1
  cat >"$r/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
# Like the official slim images: no documentation, man pages or translations.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
CFG
  find "$r/usr/share/doc" -mindepth 1 ! -type d ! -path "$r/usr/share/doc/*/copyright" -delete
  find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$r"/usr/share/{groff,info,linda,locale,man}/* "$r"/usr/share/lintian/overrides/*
  cat >"$r/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
  echo 'Acquire::Languages "none";' >"$r/etc/apt/apt.conf.d/docker-no-languages"
  rm -f "$r/etc/apt/sources.list"
  cat >"$r/etc/apt/sources.list.d/debian.sources" <<CFG
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
CFG
  [[ -f "$r/usr/share/keyrings/debian-archive-keyring.gpg" ]] || die "debootstrap left no archive keyring"
  # debootstrap copies the host's resolv.conf and hostname; a container gets its own.
  rm -f "$r/etc/resolv.conf" "$r/etc/hostname"
  rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb
  find "$r/var/log" -type f -delete
}

if cached; then
  say "cached ($key): $BASE_DEBIAN, $BASE_PYTHON"
  exit 0
fi

# Image IDs these names point at now, to delete once the new ones carry the names.
old_ids=()
for name in "$BASE_DEBIAN" "$BASE_PYTHON"; do
  old_ids+=("$(bh inspect --type image --format '{{.FromImageID}}' "$name" 2>/dev/null || true)")
done
remove_tree "$work"
mkdir -p "$work/context"
step "debootstrap --variant=minbase bookworm $MIRROR" "$work/debootstrap.log" \
  guarded debootstrap --variant=minbase --cache-dir="$BASES/debs" bookworm "$work/rootfs" "$MIRROR"
slim "$work/rootfs"
step "pack the root as rootfs.tar" "$work/tar.log" \
  tar --create --file "$work/context/rootfs.tar" --directory "$work/rootfs" --sort=name \
  --numeric-owner --xattrs --xattrs-include='*' \
  --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' .
remove_tree "$work/rootfs"
step "buildah: $BASE_DEBIAN" "$work/debian.log" \
  bh bud --format docker --isolation chroot --pull=never --layers=false \
  -f "$ROOT/images/bases/debian/Dockerfile" -t "$BASE_DEBIAN" "$work/context"
step "buildah: $BASE_PYTHON (apt-get install python3, user 65532)" "$work/python3.log" \
  bh bud --format docker --isolation chroot --network host --pull=never --layers=false \
  --build-arg DEBIAN_BASE="$BASE_DEBIAN" \
  -f "$ROOT/images/bases/python3-nonroot/Dockerfile" -t "$BASE_PYTHON" "$ROOT/images/bases/python3-nonroot"
rm -f "$work/context/rootfs.tar"

for name in "$BASE_DEBIAN" "$BASE_PYTHON"; do
  printf '%s %s\n' "$name" "$(bh inspect --type image --format '{{.FromImageID}}' "$name")"
done >"$stamp.tmp"
mv "$stamp.tmp" "$stamp"
# Older keys' work directories and stamps, and the images the new ones replaced (kept
# if something still uses them).
for old in "$BASES"/*; do
  [[ "$old" == "$work" || "$old" == "$stamp" || "$old" == "$BASES/debs" ]] || remove_tree "$old"
done
for id in "${old_ids[@]}"; do
  [[ -z "$id" ]] || bh rmi "$id" >/dev/null 2>&1 || true
done
for name in "$BASE_DEBIAN" "$BASE_PYTHON"; do
  say "built ($key): $name, $(awk -v b="$(image_size "$name")" 'BEGIN { printf "%.1f", b / 1e6 }') MB"
done
