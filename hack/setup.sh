#!/usr/bin/env bash
# Installs every tool the project's tests and demo use, pinned by hack/versions.env.
#
# Go tools are built from the Go module proxy into a cache outside the checkout,
# keyed by tool and version ($KATA_DEPLOY_CACHE, default ~/.cache/kata-deploy), so a
# fresh clone on the same machine reuses them. The checkout only gets a symlink farm
# in .tools/bin, helm state under .tools/helm, and the Python virtualenv in .venv.
#
# Usage: hack/setup.sh [tool ...]      (no argument: everything)
# Re-running is cheap: a tool whose cache entry is complete is not rebuilt.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/versions.env
. "$ROOT/hack/versions.env"

CACHE=${KATA_DEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kata-deploy}
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
export HELM_CACHE_HOME="$TOOLS/helm/cache" HELM_CONFIG_HOME="$TOOLS/helm/config"
export HELM_DATA_HOME="$TOOLS/helm/data" HELM_PLUGINS="$TOOLS/helm/plugins"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=${CGO_ENABLED:-0}
mkdir -p "$CACHE" "$BIN" "$HELM_CACHE_HOME" "$HELM_CONFIG_HOME" "$HELM_DATA_HOME" "$HELM_PLUGINS"

START=$SECONDS
say() { printf '[setup %4ss] %s\n' "$((SECONDS - START))" "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# step NAME VERSION FUNCTION: run FUNCTION with $OUT set to an empty cache entry,
# unless that entry already finished; a failure names the tool and keeps the log.
step() {
  local name=$1 version=$2 fn=$3
  OUT="$CACHE/$name-$version"
  if [[ -f "$OUT/.complete" ]]; then
    say "$name $version: cached"
    return 0
  fi
  say "$name $version: building (log: $CACHE/$name-$version.log)"
  local t0=$SECONDS
  rm -rf "$OUT" && mkdir -p "$OUT/bin"
  if ! ( set -euo pipefail; "$fn" ) >"$CACHE/$name-$version.log" 2>&1; then
    tail -n 30 "$CACHE/$name-$version.log" >&2
    die "$name $version failed to build; full log in $CACHE/$name-$version.log"
  fi
  touch "$OUT/.complete"
  say "$name $version: done in $((SECONDS - t0))s"
}

# link NAME VERSION BINARY [LINKNAME]: expose a cached binary under .tools/bin.
link() { ln -sfn "$CACHE/$1-$2/bin/$3" "$BIN/${4:-$3}"; }

# gomod MODULE@VERSION: print the directory of a downloaded module's source.
gomod() { go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'; }

wrapper_module() { # a throwaway main module to build modules whose go.mod uses replace
  local dir=$1; rm -rf "$dir"; mkdir -p "$dir"
  printf 'module kata-deploy.local/toolbuild\n\ngo 1.25\n' >"$dir/go.mod"
}

build_helm4() {
  GOBIN="$OUT/bin" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM4_VERSION" \
    "helm.sh/helm/v4/cmd/helm@$HELM4_VERSION"
}

build_helm3() {
  local kv=${KUBERNETES_VERSION#v}; local major=${kv%%.*} minor; minor=${kv#*.}; minor=${minor%%.*}
  GOBIN="$OUT/bin" go install -trimpath -ldflags "-s -w \
    -X helm.sh/helm/v3/internal/version.version=$HELM3_VERSION \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor" \
    "helm.sh/helm/v3/cmd/helm@$HELM3_VERSION"
}

build_helm_unittest() {
  local src; src=$(gomod "github.com/helm-unittest/helm-unittest@$HELM_UNITTEST_VERSION")
  cp -r "$src" "$OUT/src" && chmod -R u+w "$OUT/src"
  (cd "$OUT/src" && go build -trimpath \
    -ldflags "-s -w -X github.com/helm-unittest/helm-unittest/internal/build.version=${HELM_UNITTEST_VERSION#v}" \
    -o "$OUT/plugin/untt-linux-amd64" ./cmd/helm-unittest)
  cp "$OUT/src/plugin.yaml" "$OUT/plugin/plugin.yaml"
  # The upstream install hook downloads a release binary; ours is built above.
  python3 - "$OUT/plugin/plugin.yaml" <<'PY'
import sys, yaml
path = sys.argv[1]
doc = yaml.safe_load(open(path))
doc.pop("hooks", None)
open(path, "w").write(yaml.safe_dump(doc, sort_keys=False))
PY
  ln -s ../plugin/untt-linux-amd64 "$OUT/bin/untt"
  rm -rf "$OUT/src"
}

build_ct() {
  # `go install mod@version` asks the proxy for the module's version list (to report
  # deprecations), which the proxy refuses for this module; build from its source.
  local src; src=$(gomod "github.com/helm/chart-testing/v3@$CT_VERSION")
  cp -r "$src" "$OUT/src" && chmod -R u+w "$OUT/src"
  (cd "$OUT/src" && go build -trimpath \
    -ldflags "-s -w -X github.com/helm/chart-testing/v3/ct/cmd.Version=$CT_VERSION" \
    -o "$OUT/bin/ct" ./ct)
  rm -rf "$OUT/src"
}

build_etcd() {
  local w="$OUT/wrap"; wrapper_module "$w"
  (cd "$w" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "go.etcd.io/etcd/etcdctl/v3@$ETCD_VERSION" \
    && go build -trimpath -ldflags "-s -w" -o "$OUT/bin/etcd" go.etcd.io/etcd/server/v3 \
    && go build -trimpath -ldflags "-s -w" -o "$OUT/bin/etcdctl" go.etcd.io/etcd/etcdctl/v3)
  rm -rf "$w"
}

# k8s_build CMD...: build Kubernetes commands into $OUT/bin from a wrapper module.
k8s_build() {
  local w="$OUT/wrap" kgomod minor
  wrapper_module "$w"
  kgomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  minor=${KUBERNETES_VERSION#v1.}
  # Every staging module kubernetes replaces with ./staging/... is published as v0.<minor>.
  {
    printf 'require k8s.io/kubernetes %s\n' "$KUBERNETES_VERSION"
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$kgomod" |
      while read -r mod; do printf 'replace %s => %s v0.%s\n' "$mod" "$mod" "$minor"; done
  } >>"$w/go.mod"
  local pkg=k8s.io/component-base/version cgo=k8s.io/client-go/pkg/version
  local major=1 kminor=${minor%%.*}
  local ld="-s -w"
  for p in $pkg $cgo; do
    ld+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$kminor"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$w" && for cmd in "$@"; do
     echo "building $cmd"
     go build -trimpath -ldflags "$ld" -o "$OUT/bin/$cmd" "k8s.io/kubernetes/cmd/$cmd"
   done)
  rm -rf "$w"
}

build_kubernetes() { k8s_build kube-apiserver kube-controller-manager kube-scheduler kubectl; }

# The real worker node's Kubernetes side (tests/cluster/realnode.py); same version.
build_kube_node() { k8s_build kubelet kube-proxy; }

build_kwok() {
  GOBIN="$OUT/bin" go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
}

build_containerd2() {
  GOBIN="$OUT/bin" go install -trimpath -tags "no_btrfs no_devmapper no_zfs" \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD2_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD2_VERSION"
}

# The real node's runc shim and ctr, from the same containerd module as the daemon.
build_containerd2_node() {
  GOBIN="$OUT/bin" go install -trimpath -tags "no_btrfs no_devmapper no_zfs" \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD2_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD2_VERSION" \
    "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD2_VERSION"
}

build_containerd1() {
  # Debian's containerd 1.6, unpacked into the cache rather than installed: nothing
  # on the host changes and no service is started.
  local deb="$OUT/deb"; mkdir -p "$deb"
  if ! (cd "$deb" && apt-get download "$CONTAINERD1_DEBIAN_PACKAGE"); then
    apt-get update -qq && (cd "$deb" && apt-get download "$CONTAINERD1_DEBIAN_PACKAGE")
  fi
  dpkg-deb -x "$deb"/*.deb "$OUT/root"
  ln -s ../root/usr/bin/containerd "$OUT/bin/containerd"
  rm -rf "$deb"
}

build_nfd_chart() {
  # The upstream NFD chart, packaged for `helm dependency build` without the network.
  local src; src=$(gomod "sigs.k8s.io/node-feature-discovery@$NFD_VERSION")
  # The chart in the module carries a placeholder version; NFD's release sets it.
  "$BIN/helm" package --version "${NFD_VERSION#v}" --app-version "$NFD_VERSION" \
    "$src/deployment/helm/node-feature-discovery" -d "$OUT/charts"
}

install_nfd_chart() { # the kata-deploy chart's dependency, where helm lint/template look for it
  local tgz="$CACHE/nfd-chart-$NFD_VERSION/charts/node-feature-discovery-${NFD_VERSION#v}.tgz"
  [[ -f "$tgz" ]] || die "$tgz is missing: remove $CACHE/nfd-chart-$NFD_VERSION and re-run hack/setup.sh nfd-chart"
  mkdir -p "$ROOT/helm-chart/kata-deploy/charts"
  cp "$tgz" "$ROOT/helm-chart/kata-deploy/charts/"
}

setup_python() {
  local venv="$ROOT/.venv" stamp
  stamp=$(cat "$ROOT/requirements-dev.txt" "$ROOT/dispatcher/pyproject.toml" \
    "$ROOT/node-installer/pyproject.toml" | sha256sum | cut -c1-16)
  if [[ -f "$venv/.stamp-$stamp" ]]; then say "python venv: up to date"; return 0; fi
  say "python venv: installing requirements-dev.txt and both packages"
  local t0=$SECONDS
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$ROOT/requirements-dev.txt" \
    || die "pip could not install requirements-dev.txt"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps \
    -e "$ROOT/dispatcher" -e "$ROOT/node-installer" || die "pip could not install the two packages"
  touch "$venv/.stamp-$stamp"
  say "python venv: done in $((SECONDS - t0))s"
}

# Debian packages the real node and the image builds need, at pinned versions
# (NODE_APT_PACKAGES): iptables and conntrack for kube-proxy and the CNI bridge, runc and
# the CNI plugins for containerd, buildah to build images/*/Dockerfile, debootstrap for
# the local base images. Installing them starts no service.
install_node_packages() {
  local want=() p
  read -r -a want <<<"$NODE_APT_PACKAGES"
  local missing=()
  for p in "${want[@]}"; do
    [[ "$(dpkg-query -W -f='${Status} ${Version}' "${p%%=*}" 2>/dev/null)" == "install ok installed ${p#*=}" ]] || missing+=("$p")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then say "apt packages: installed"; return 0; fi
  [[ $(id -u) -eq 0 ]] || die "installing ${missing[*]} needs root (apt-get install)"
  say "apt packages: installing ${missing[*]}"
  local t0=$SECONDS log="$CACHE/apt-packages.log"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
      --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    die "apt-get could not install ${missing[*]}; a pinned version may have left the archive (see hack/versions.env and $log)"
  fi
  say "apt packages: done in $((SECONDS - t0))s"
}

# Debian's distribution registry, unpacked into the cache, not installed: installing
# it would start a system-wide service on port 5000.
build_registry() {
  local deb="$OUT/deb"; mkdir -p "$deb"
  (cd "$deb" && apt-get download "docker-registry=$REGISTRY_DEBIAN_VERSION")
  dpkg-deb -x "$deb"/*.deb "$OUT/root"
  ln -s ../root/usr/bin/docker-registry "$OUT/bin/docker-registry"
  rm -rf "$deb"
}

install_unittest_plugin() {
  local dest="$HELM_PLUGINS/unittest"
  rm -rf "$dest"; ln -sfn "$CACHE/helm-unittest-$HELM_UNITTEST_VERSION/plugin" "$dest"
}

all_tools=(python helm4 helm3 helm-unittest ct etcd kubernetes kube-node kwok containerd2 containerd2-node
  containerd1 nfd-chart apt-packages registry)
wanted=("$@"); [[ ${#wanted[@]} -gt 0 ]] || wanted=("${all_tools[@]}")

command -v go >/dev/null || die "go is required (Go 1.25 or newer) to build the pinned tools"
for t in "${wanted[@]}"; do
  case $t in
    python) setup_python ;;
    helm4) step helm4 "$HELM4_VERSION" build_helm4; link helm4 "$HELM4_VERSION" helm ;;
    helm3) step helm3 "$HELM3_VERSION" build_helm3; link helm3 "$HELM3_VERSION" helm helm3 ;;
    helm-unittest) step helm-unittest "$HELM_UNITTEST_VERSION" build_helm_unittest; install_unittest_plugin ;;
    ct) step ct "$CT_VERSION" build_ct; link ct "$CT_VERSION" ct ;;
    etcd) step etcd "$ETCD_VERSION" build_etcd; link etcd "$ETCD_VERSION" etcd; link etcd "$ETCD_VERSION" etcdctl ;;
    kubernetes) step kubernetes "$KUBERNETES_VERSION" build_kubernetes
      for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do link kubernetes "$KUBERNETES_VERSION" "$c"; done ;;
    kwok) step kwok "$KWOK_VERSION" build_kwok; link kwok "$KWOK_VERSION" kwok; link kwok "$KWOK_VERSION" kwokctl ;;
    containerd2) step containerd2 "$CONTAINERD2_VERSION" build_containerd2; link containerd2 "$CONTAINERD2_VERSION" containerd containerd2 ;;
    containerd2-node) step containerd2-node "$CONTAINERD2_VERSION" build_containerd2_node
      link containerd2-node "$CONTAINERD2_VERSION" containerd-shim-runc-v2; link containerd2-node "$CONTAINERD2_VERSION" ctr ;;
    kube-node) step kube-node "$KUBERNETES_VERSION" build_kube_node
      for c in kubelet kube-proxy; do link kube-node "$KUBERNETES_VERSION" "$c"; done ;;
    apt-packages) install_node_packages ;;
    registry) step registry "$REGISTRY_DEBIAN_VERSION" build_registry; link registry "$REGISTRY_DEBIAN_VERSION" docker-registry ;;
    containerd1) step containerd1 debian build_containerd1; link containerd1 debian containerd containerd1 ;;
    nfd-chart) step nfd-chart "$NFD_VERSION" build_nfd_chart; install_nfd_chart ;;
    *) die "unknown tool '$t' (known: ${all_tools[*]})" ;;
  esac
done
say "all requested tools ready in $BIN"
