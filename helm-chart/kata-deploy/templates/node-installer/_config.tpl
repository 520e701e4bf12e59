{{/*
kata-deploy.installer.config: the text of installer.yaml (node-installer/README.md is its
one definition): every node-side setting, enabled shims only.
Usage: {{ include "kata-deploy.installer.config" . }}
*/}}
{{- define "kata-deploy.installer.config" -}}
{{- $shims := (include "kata-deploy.enabledShims" . | fromYaml).names -}}
{{- $config := dict
  "version" 1
  "suffix" .Values.env.multiInstallSuffix
  "debug" .Values.env.debug
  "distribution" .Values.k8sDistribution
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
  "arches" $shim.supportedArches
  "dropIn" ($shim.dropIn | default "")
  "allowedHypervisorAnnotations" ($shim.allowedHypervisorAnnotations | default list)
  "snapshotter" ((dig "containerd" "snapshotter" "" $shim) | default "")
  "crioGuestPull" ((dig "crio" "guestPull" false $shim) | default false)
  "agentHttpsProxy" ((dig "agent" "httpsProxy" "" $shim) | default "")
  "agentNoProxy" ((dig "agent" "noProxy" "" $shim) | default "") -}}
{{- $_ := set $nodeShims $name $entry -}}
{{- end -}}
{{- $_ := set $config "shims" $nodeShims -}}
{{- $custom := dict -}}
{{- range $name, $runtime := (include "kata-deploy.customRuntimes" . | fromYaml) -}}
{{- $_ := set $custom $name (dict
  "baseConfig" $runtime.baseConfig
  "dropIn" ($runtime.dropIn | default "")
  "snapshotter" ((dig "containerd" "snapshotter" "" $runtime) | default "")
  "crioPullType" ((dig "crio" "pullType" "" $runtime) | default "")) -}}
{{- end -}}
{{- $_ := set $config "customRuntimes" $custom -}}
{{- toYaml $config -}}
{{- end -}}
