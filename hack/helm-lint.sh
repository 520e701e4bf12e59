#!/usr/bin/env bash
# helm lint --strict of the kata-deploy chart with its defaults, every ci/*-values.yaml and
# both try-kata-*.values.yaml, under Helm 4 (`helm`) and Helm 3 (`helm3`); then checks
# that `helm template` renders identical manifests under both (C14). The one difference
# that is Helm's own printing, not the chart's, is ignored: Helm 4 leaves an empty line
# before the `---` between two documents of one template file.
# Usage: hack/helm-lint.sh   (run through `make helm-lint`, which sets PATH and HELM_*)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHART="$ROOT/helm-chart/kata-deploy"
# shellcheck source=hack/versions.env
. "$ROOT/hack/versions.env"

for bin in helm helm3; do
  command -v "$bin" >/dev/null || { echo "helm-lint: $bin not found; run: bash hack/setup.sh helm4 helm3" >&2; exit 2; }
done
nfd="$CHART/charts/node-feature-discovery-${NFD_VERSION#v}.tgz"
[[ -f "$nfd" ]] || { echo "helm-lint: $nfd is missing; run: bash hack/setup.sh nfd-chart" >&2; exit 2; }

scenarios=("")
for f in "$CHART"/ci/*-values.yaml "$CHART"/try-kata-*.values.yaml; do scenarios+=("$f"); done

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
failed=0
for scenario in "${scenarios[@]}"; do
  name=${scenario:+$(basename "$scenario")}; name=${name:-defaults}
  args=(); [[ -n "$scenario" ]] && args=(-f "$scenario")
  for bin in helm helm3; do
    if ! "$bin" lint --strict "$CHART" "${args[@]}" >"$tmp/lint.log" 2>&1; then
      echo "helm-lint: FAIL $bin lint --strict with $name" >&2; cat "$tmp/lint.log" >&2; failed=1
      continue
    fi
    "$bin" template kata-deploy "$CHART" --namespace kata-deploy "${args[@]}" |
      awk 'NR > 1 && !(prev == "" && $0 == "---") { print prev } { prev = $0 } END { print prev }' >"$tmp/$bin.yaml"
  done
  if ! diff -u "$tmp/helm.yaml" "$tmp/helm3.yaml" >"$tmp/diff" 2>&1; then
    echo "helm-lint: FAIL helm template differs between Helm 4 and Helm 3 with $name:" >&2
    cat "$tmp/diff" >&2; failed=1
  else
    echo "helm-lint: ok $name (Helm 4 and 3 lint clean, identical render: $(wc -c <"$tmp/helm.yaml") bytes)"
  fi
done
exit "$failed"
