#!/usr/bin/env bash
# Downloads the Kata Containers static release for one architecture, checks its SHA-256
# before unpacking anything, and leaves its opt/kata tree at DEST (the installer's
# --payload). The node-installer Dockerfile RUNs it in its payload stage; tests/images
# runs it against a synthetic release served from a file:// URL.
#
# What it must not do: unpack an archive whose checksum was not verified, or accept an
# archive that is not laid out like a Kata static release.
#
# Usage: images/node-installer/fetch-kata.sh DEST
# Environment (the Dockerfile's build args):
#   TARGETARCH                 amd64 | arm64 | s390x | ppc64le
#   KATA_VERSION               release, e.g. 3.28.0
#   KATA_SHA256_<ARCH>         SHA-256 of kata-static-<version>-<arch>.<suffix>, per arch
#   KATA_ARCHIVE_SUFFIX        tar.zst (3.x releases since 3.14) or tar.xz (older)
#   KATA_RELEASE_URL           base URL; <base>/<version>/<archive> is fetched
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 DEST" >&2
  exit 2
fi
dest=$1
arch=${TARGETARCH:-}
version=${KATA_VERSION:?KATA_VERSION is empty: pass --build-arg KATA_VERSION=X.Y.Z}
suffix=${KATA_ARCHIVE_SUFFIX:-tar.zst}
base=${KATA_RELEASE_URL:-https://github.com/kata-containers/kata-containers/releases/download}

case $arch in
  amd64) sha256=${KATA_SHA256_AMD64:-} ;;
  arm64) sha256=${KATA_SHA256_ARM64:-} ;;
  s390x) sha256=${KATA_SHA256_S390X:-} ;;
  ppc64le) sha256=${KATA_SHA256_PPC64LE:-} ;;
  "") echo "fetch-kata: TARGETARCH is empty: build with BuildKit (docker buildx build --platform linux/<arch>)" >&2; exit 2 ;;
  *) echo "fetch-kata: no Kata static release for architecture '$arch' (amd64, arm64, s390x, ppc64le)" >&2; exit 2 ;;
esac
archive="kata-static-$version-$arch.$suffix"
if [[ ! $sha256 =~ ^[0-9a-f]{64}$ ]]; then
  echo "fetch-kata: KATA_SHA256_${arch^^}='$sha256' is not a SHA-256: pass --build-arg KATA_SHA256_${arch^^}=<sha256 of $archive>" >&2
  exit 2
fi
[[ ! -e $dest ]] || { echo "fetch-kata: '$dest' already exists" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fetch-kata: $base/$version/$archive"
curl -fsSL --retry 3 -o "$work/$archive" "$base/$version/$archive"
if ! echo "$sha256  $work/$archive" | sha256sum --check --strict --quiet - >&2; then
  echo "fetch-kata: $archive does not match KATA_SHA256_${arch^^}=$sha256 (got $(sha256sum "$work/$archive" | cut -d' ' -f1))" >&2
  exit 1
fi
mkdir "$work/root"
tar -xf "$work/$archive" -C "$work/root" --no-same-owner
rm "$work/$archive"
if [[ ! -d "$work/root/opt/kata/bin" ]]; then
  echo "fetch-kata: $archive has no opt/kata/bin: not a Kata static release" >&2
  exit 1
fi
mkdir -p "$(dirname "$dest")"
mv "$work/root/opt/kata" "$dest"
echo "fetch-kata: Kata $version ($arch) at $dest: $(du -sh "$dest" | cut -f1)"
