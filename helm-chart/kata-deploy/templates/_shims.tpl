{{- /*
The shims the chart knows, which of them are enabled, the custom runtimes, and whether
node-feature-discovery is present: read by runtimeclasses.yaml, validate.yaml, NOTES.txt
and the installer configuration (node-installer/_config.tpl).
*/ -}}

{{/*
kata-deploy.shimCatalogue: what the chart knows about each shim of values.yaml: its pod
overhead (a VM's memory and vCPU cost beyond the containers' requests) and, for TEE shims,
the NFD label that marks capable nodes. Returns YAML; use with fromYaml.
Usage: {{ $catalogue := include "kata-deploy.shimCatalogue" . | fromYaml }}
*/}}
{{- define "kata-deploy.shimCatalogue" -}}
clh: {memory: 130Mi, cpu: 250m}
clh-runtime-rs: {memory: 130Mi, cpu: 250m}
dragonball: {memory: 130Mi, cpu: 250m}
fc: {memory: 130Mi, cpu: 250m}
qemu: {memory: 160Mi, cpu: 250m}
qemu-runtime-rs: {memory: 160Mi, cpu: 250m}
qemu-coco-dev: {memory: 160Mi, cpu: 250m}
qemu-coco-dev-runtime-rs: {memory: 160Mi, cpu: 250m}
qemu-nvidia-gpu: {memory: 4096Mi, cpu: "1"}
qemu-nvidia-gpu-snp: {memory: 4096Mi, cpu: "1", tee: snp}
qemu-nvidia-gpu-tdx: {memory: 4096Mi, cpu: "1", tee: tdx}
qemu-snp: {memory: 2048Mi, cpu: "1", tee: snp}
qemu-tdx: {memory: 2048Mi, cpu: "1", tee: tdx}
qemu-se: {memory: 2048Mi, cpu: "1", tee: se}
qemu-se-runtime-rs: {memory: 2048Mi, cpu: "1", tee: se}
stratovirt: {memory: 130Mi, cpu: 250m}
{{- end -}}

{{/*
kata-deploy.nfdLabels: the NFD node label of each TEE kind (C3).
Usage: {{ $labels := include "kata-deploy.nfdLabels" . | fromYaml }}
*/}}
{{- define "kata-deploy.nfdLabels" -}}
snp: {amd.feature.node.kubernetes.io/snp: "true"}
tdx: {intel.feature.node.kubernetes.io/tdx: "true"}
se: {feature.node.kubernetes.io/cpu-security.se.enabled: "true"}
{{- end -}}

{{/*
kata-deploy.enabledShims: names of the enabled shims, sorted. A shim's `enabled: ~` (or a
missing key: Helm drops keys a user sets to null) follows shims.disableAll.
Returns YAML {names: [...]}; use with fromYaml.
Usage: {{ $shims := (include "kata-deploy.enabledShims" . | fromYaml).names }}
*/}}
{{- define "kata-deploy.enabledShims" -}}
{{- $names := list -}}
{{- range $name, $shim := .Values.shims -}}
{{- if kindIs "map" $shim -}}
{{- $enabled := not $.Values.shims.disableAll -}}
{{- if and (hasKey $shim "enabled") (not (kindIs "invalid" $shim.enabled)) -}}
{{- $enabled = $shim.enabled -}}
{{- end -}}
{{- if $enabled }}{{ $names = append $names $name }}{{ end -}}
{{- end -}}
{{- end -}}
{{- dict "names" (sortAlpha $names) | toYaml -}}
{{- end -}}

{{/*
kata-deploy.customRuntimes: the custom runtimes to install: .Values.customRuntimes.runtimes
when customRuntimes.enabled, else empty. Returns JSON; use with fromJson (JSON, because
toYaml returns nothing at all for a string holding a character YAML cannot carry).
Usage: {{ $custom := include "kata-deploy.customRuntimes" . | fromJson }}
*/}}
{{- define "kata-deploy.customRuntimes" -}}
{{- if and .Values.customRuntimes.enabled .Values.customRuntimes.runtimes -}}
{{- toJson .Values.customRuntimes.runtimes -}}
{{- else -}}
{}
{{- end -}}
{{- end -}}

{{/*
kata-deploy.nfdPresent: "true" when node-feature-discovery is deployed by this release
or an existing node-feature-discovery-worker DaemonSet is found. The lookup is the one
the seed asks for (C3); under `helm template` it finds nothing, so only the subchart
counts there.
Usage: {{ $nfd := eq (include "kata-deploy.nfdPresent" .) "true" }}
*/}}
{{- define "kata-deploy.nfdPresent" -}}
{{- $present := (index .Values "node-feature-discovery").enabled -}}
{{- if not $present -}}
{{- range (lookup "apps/v1" "DaemonSet" "" "").items -}}
{{- if hasSuffix "node-feature-discovery-worker" .metadata.name }}{{ $present = true }}{{ end -}}
{{- end -}}
{{- end -}}
{{- ternary "true" "false" (and $present true) -}}
{{- end -}}

{{/*
kata-deploy.defaultShims: the defaultShim entries the installer acts on, as YAML
{arch: shim}: those naming an enabled shim that supports that architecture (the same
filter as installer.yaml's defaultShim in node-installer/_config.tpl). A node of such an
architecture registers the plain `kata[-suffix]` handler with that shim.
Usage: {{ $defaults := include "kata-deploy.defaultShims" . | fromYaml }}
*/}}
{{- define "kata-deploy.defaultShims" -}}
{{- $enabled := (include "kata-deploy.enabledShims" . | fromYaml).names -}}
{{- $defaults := dict -}}
{{- range $arch, $shim := .Values.defaultShim -}}
{{- if and (has $shim $enabled) (has $arch (index $.Values.shims $shim).supportedArches) -}}
{{- $_ := set $defaults $arch $shim -}}
{{- end -}}
{{- end -}}
{{- toYaml $defaults -}}
{{- end -}}
