{{/*
kata-deploy.installer.config: the text of installer.yaml (node-installer/README.md is its
one definition): every node-side setting, enabled shims and custom runtimes only. Its
keys are the values.yaml keys they come from, at the same paths, so one grep finds a
setting on both sides; only `version` (bumped with any change of these keys: the chart
and installer of one release exchange it) and `nodeLabel` are its own.
Usage: {{ include "kata-deploy.installer.config" . }}
*/}}
{{- define "kata-deploy.installer.config" -}}
{{- $shims := (include "kata-deploy.enabledShims" . | fromYaml).names -}}
{{- $config := dict
  "version" 2
  "env" (dict "multiInstallSuffix" .Values.env.multiInstallSuffix "debug" .Values.env.debug)
  "k8sDistribution" .Values.k8sDistribution
  "nodeLabel" "katacontainers.io/kata-runtime"
  "installer" (dict "waitRuntimeSeconds" (int .Values.installer.waitRuntimeSeconds))
  "containerd" (dict "configPath" .Values.containerd.configPath)
  "crio" (dict "dropInDir" .Values.crio.dropInDir) -}}
{{- $defaults := dict -}}
{{- range $arch, $shim := .Values.defaultShim -}}
{{- if and (has $shim $shims) (has $arch (index $.Values.shims $shim).supportedArches) -}}
{{- $_ := set $defaults $arch $shim -}}
{{- end -}}
{{- end -}}
{{- $_ := set $config "defaultShim" $defaults -}}
{{- $nodeShims := dict -}}
{{- range $name := $shims -}}
{{- $shim := index $.Values.shims $name -}}
{{- $entry := dict
  "supportedArches" $shim.supportedArches
  "dropIn" ($shim.dropIn | default "")
  "allowedHypervisorAnnotations" ($shim.allowedHypervisorAnnotations | default list)
  "containerd" (dict "snapshotter" ((dig "containerd" "snapshotter" "" $shim) | default "")) -}}
{{- /* crio and agent exist in values.yaml for the TEE shims only */ -}}
{{- if hasKey $shim "crio" -}}
{{- $_ := set $entry "crio" (dict "guestPull" ((dig "crio" "guestPull" false $shim) | default false)) -}}
{{- end -}}
{{- if hasKey $shim "agent" -}}
{{- $_ := set $entry "agent" (dict
  "httpsProxy" ((dig "agent" "httpsProxy" "" $shim) | default "")
  "noProxy" ((dig "agent" "noProxy" "" $shim) | default "")) -}}
{{- end -}}
{{- $_ := set $nodeShims $name $entry -}}
{{- end -}}
{{- $_ := set $config "shims" $nodeShims -}}
{{- $custom := dict -}}
{{- range $name, $runtime := (include "kata-deploy.customRuntimes" . | fromJson) -}}
{{- $_ := set $custom $name (dict
  "baseConfig" $runtime.baseConfig
  "dropIn" ($runtime.dropIn | default "")
  "containerd" (dict "snapshotter" ((dig "containerd" "snapshotter" "" $runtime) | default ""))
  "crio" (dict "pullType" ((dig "crio" "pullType" "" $runtime) | default ""))) -}}
{{- end -}}
{{- $_ := set $config "customRuntimes" (dict "runtimes" $custom) -}}
{{- toYaml $config -}}
{{- end -}}
