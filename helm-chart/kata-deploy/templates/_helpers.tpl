{{/*
kata-deploy.name: the chart name, overridable for nothing (kept short, used in labels).
Usage: {{ include "kata-deploy.name" . }}
*/}}
{{- define "kata-deploy.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
kata-deploy.fullname: release-scoped base name of every namespaced object: the release
name when it already contains the chart name, else "<release>-<chart>"; 40 characters at
most so "<fullname>-job-dispatcher" and friends stay within 63.
Usage: {{ include "kata-deploy.fullname" . }}
*/}}
{{- define "kata-deploy.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
kata-deploy.suffix: "-<env.multiInstallSuffix>", or "" without a suffix.
Usage: {{ include "kata-deploy.suffix" . }}
*/}}
{{- define "kata-deploy.suffix" -}}
{{- with .Values.env.multiInstallSuffix }}-{{ . }}{{ end -}}
{{- end -}}

{{/*
kata-deploy.clusterName: name of a cluster-scoped object: "<fullname>-<component>" plus
the multi-install suffix, so two releases on one cluster never share one (C12).
Usage: {{ include "kata-deploy.clusterName" (list . "installer") }}
*/}}
{{- define "kata-deploy.clusterName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s%s" (include "kata-deploy.fullname" $root) (index . 1) (include "kata-deploy.suffix" $root) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
kata-deploy.chart: "<name>-<version>" for the helm.sh/chart label.
Usage: {{ include "kata-deploy.chart" . }}
*/}}
{{- define "kata-deploy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
kata-deploy.selectorLabels: the labels that identify this release's pods.
Usage: {{ include "kata-deploy.selectorLabels" . }}
*/}}
{{- define "kata-deploy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kata-deploy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
kata-deploy.labels: common labels of every object.
Usage: {{ include "kata-deploy.labels" . }}
*/}}
{{- define "kata-deploy.labels" -}}
helm.sh/chart: {{ include "kata-deploy.chart" . }}
{{ include "kata-deploy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/*
kata-deploy.componentLabels: common labels plus app.kubernetes.io/component.
Usage: {{ include "kata-deploy.componentLabels" (list . "installer") }}
*/}}
{{- define "kata-deploy.componentLabels" -}}
{{ include "kata-deploy.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/*
kata-deploy.image: "<reference>:<tag>", the tag defaulting to the chart's appVersion.
Usage: {{ include "kata-deploy.image" (list . .Values.image) }}
*/}}
{{- define "kata-deploy.image" -}}
{{- $root := index . 0 -}}
{{- $image := index . 1 -}}
{{- printf "%s:%s" $image.reference (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}

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
when customRuntimes.enabled, else empty. Returns YAML; use with fromYaml.
Usage: {{ $custom := include "kata-deploy.customRuntimes" . | fromYaml }}
*/}}
{{- define "kata-deploy.customRuntimes" -}}
{{- if and .Values.customRuntimes.enabled .Values.customRuntimes.runtimes -}}
{{- toYaml .Values.customRuntimes.runtimes -}}
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
kata-deploy.compileSelector: the label-selector string of one selection block
({nodeSelector, nodeSelectorExpressions}): equality terms sorted by key, then each
expression in order (In -> "k in (a,b)", NotIn -> "k notin (a,b)", Exists -> "k",
DoesNotExist -> "!k"), joined by ",". Empty when both are empty. The rules that make
this safe (known operators, valid keys and values) are in validate.yaml.
Usage: {{ include "kata-deploy.compileSelector" .Values.job }}
*/}}
{{- define "kata-deploy.compileSelector" -}}
{{- $terms := list -}}
{{- $selector := .nodeSelector | default dict -}}
{{- range $key := keys $selector | sortAlpha -}}
{{- $terms = append $terms (printf "%s=%s" $key (index $selector $key)) -}}
{{- end -}}
{{- range .nodeSelectorExpressions -}}
{{- if eq .operator "In" -}}
{{- $terms = append $terms (printf "%s in (%s)" .key (join "," .values)) -}}
{{- else if eq .operator "NotIn" -}}
{{- $terms = append $terms (printf "%s notin (%s)" .key (join "," .values)) -}}
{{- else if eq .operator "Exists" -}}
{{- $terms = append $terms .key -}}
{{- else if eq .operator "DoesNotExist" -}}
{{- $terms = append $terms (printf "!%s" .key) -}}
{{- end -}}
{{- end -}}
{{- join "," $terms -}}
{{- end -}}

{{/*
kata-deploy.dispatcher.selectionArgs: the dispatcher's node-selection arguments (C7):
--nodes a,b for explicit names; else --selector <compiled string>; else nothing (all
nodes). Returns YAML {args: [...]}; use with fromYaml.
Usage: {{ (include "kata-deploy.dispatcher.selectionArgs" .Values.job.cleanup | fromYaml).args }}
*/}}
{{- define "kata-deploy.dispatcher.selectionArgs" -}}
{{- $args := list -}}
{{- if .nodes -}}
{{- $args = list "--nodes" (join "," .nodes) -}}
{{- else -}}
{{- $selector := include "kata-deploy.compileSelector" . -}}
{{- if $selector }}{{ $args = list "--selector" $selector }}{{ end -}}
{{- end -}}
{{- dict "args" $args | toYaml -}}
{{- end -}}

{{/*
Names of the job-mode objects. Per-node Job names are "<prefix>-<node part>": the
dispatcher appends at most 33 characters (a shortened node name and a hash), so the
prefix is kept to 29 ("<fullname up to 21>-install" / "-cleanup").
Usage: {{ include "kata-deploy.dispatcher.installJobName" . }}
*/}}
{{- define "kata-deploy.dispatcher.installJobName" -}}
{{- printf "%s-job-dispatcher" (include "kata-deploy.fullname" .) -}}
{{- end -}}

{{- define "kata-deploy.dispatcher.cleanupJobName" -}}
{{- printf "%s-job-cleanup" (include "kata-deploy.fullname" .) -}}
{{- end -}}

{{- define "kata-deploy.dispatcher.teardownJobName" -}}
{{- printf "%s-teardown" (include "kata-deploy.fullname" .) -}}
{{- end -}}

{{- define "kata-deploy.dispatcher.serviceAccountName" -}}
{{- printf "%s-dispatcher" (include "kata-deploy.fullname" .) -}}
{{- end -}}

{{- define "kata-deploy.installer.jobNamePrefix" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "kata-deploy.fullname" $root | trunc 21 | trimSuffix "-") (index . 1) -}}
{{- end -}}

{{/*
kata-deploy.installer.serviceAccountName: the installer's ServiceAccount (the
DaemonSet and every per-node Job run as it).
Usage: {{ include "kata-deploy.installer.serviceAccountName" . }}
*/}}
{{- define "kata-deploy.installer.serviceAccountName" -}}
{{- include "kata-deploy.fullname" . -}}
{{- end -}}

{{/*
kata-deploy.installer.daemonSetName: the installer DaemonSet (daemonset mode). Its pods
read it by this name on SIGTERM, and the teardown hook deletes it by this name.
Usage: {{ include "kata-deploy.installer.daemonSetName" . }}
*/}}
{{- define "kata-deploy.installer.daemonSetName" -}}
{{- include "kata-deploy.fullname" . -}}
{{- end -}}

{{- define "kata-deploy.installer.configMapName" -}}
{{- printf "%s-installer-config" (include "kata-deploy.fullname" .) -}}
{{- end -}}

{{- define "kata-deploy.installer.jobTemplatesName" -}}
{{- printf "%s-job-templates" (include "kata-deploy.fullname" .) -}}
{{- end -}}

{{/*
kata-deploy.installer.hostPaths: the host directories the installer mounts, each at
"/host<path>" (docs/contracts.md), as YAML {paths: [{name, path, type, writable}]}.
writable marks the paths the mutating stages change; read-only stages mount all of them
read-only. /etc is mounted whole because containerd, CRI-O and k0s keep their configs in
different subdirectories and only host-check knows which this node has; the installer
writes only files its manifest records. /run/systemd (read-only, no type check: hosts
without systemd do not have it) is how `--restart auto` sees that the host runs systemd
(/run/systemd/system), which it then drives through nsenter into PID 1 (hostPID).
Usage: {{ range (include "kata-deploy.installer.hostPaths" . | fromYaml).paths }}
*/}}
{{- define "kata-deploy.installer.hostPaths" -}}
{{- $paths := list
  (dict "name" "host-etc" "path" "/etc" "type" "Directory" "writable" true)
  (dict "name" "host-opt" "path" "/opt" "type" "DirectoryOrCreate" "writable" true)
  (dict "name" "host-run" "path" "/run/kata-deploy" "type" "DirectoryOrCreate" "writable" true)
  (dict "name" "host-dev" "path" "/dev" "type" "Directory" "writable" false)
  (dict "name" "host-run-systemd" "path" "/run/systemd" "type" "" "writable" false) -}}
{{- if has .Values.k8sDistribution (list "k3s" "rke2") -}}
{{- $paths = append $paths (dict "name" "host-rancher" "path" "/var/lib/rancher" "type" "Directory" "writable" true) -}}
{{- else if eq .Values.k8sDistribution "microk8s" -}}
{{- $paths = append $paths (dict "name" "host-microk8s" "path" "/var/snap/microk8s" "type" "Directory" "writable" true) -}}
{{- end -}}
{{- with .Values.containerd.configPath -}}
{{- $dir := dir . -}}
{{- $covered := false -}}
{{- range $paths }}{{ if or (eq $dir .path) (hasPrefix (printf "%s/" .path) $dir) }}{{ $covered = true }}{{ end }}{{ end -}}
{{- if not $covered -}}
{{- $paths = append $paths (dict "name" "host-containerd-config" "path" $dir "type" "Directory" "writable" true) -}}
{{- end -}}
{{- end -}}
{{- with .Values.crio.dropInDir -}}
{{- $dir := . -}}
{{- $covered := false -}}
{{- range $paths }}{{ if or (eq $dir .path) (hasPrefix (printf "%s/" .path) $dir) }}{{ $covered = true }}{{ end }}{{ end -}}
{{- if not $covered -}}
{{- $paths = append $paths (dict "name" "host-crio-dropin" "path" $dir "type" "DirectoryOrCreate" "writable" true) -}}
{{- end -}}
{{- end -}}
{{- dict "paths" $paths | toYaml -}}
{{- end -}}

{{/*
kata-deploy.installer.volumes: the pod volumes every installer pod has: the host
directories and the installer configuration.
Usage: {{- include "kata-deploy.installer.volumes" . | nindent 8 }}
*/}}
{{- define "kata-deploy.installer.volumes" -}}
{{- range (include "kata-deploy.installer.hostPaths" . | fromYaml).paths }}
- name: {{ .name }}
  hostPath:
    path: {{ .path }}
    type: {{ .type | quote }}
{{- end }}
- name: installer-config
  configMap:
    name: {{ include "kata-deploy.installer.configMapName" . }}
{{- end -}}

{{/*
kata-deploy.installer.volumeMounts: the mounts of one installer container; `writable`
false mounts every host directory read-only (stages that only read the host).
Usage: {{- include "kata-deploy.installer.volumeMounts" (list . true) | nindent 12 }}
*/}}
{{- define "kata-deploy.installer.volumeMounts" -}}
{{- $root := index . 0 -}}
{{- $writable := index . 1 -}}
{{- range (include "kata-deploy.installer.hostPaths" $root | fromYaml).paths }}
- name: {{ .name }}
  mountPath: /host{{ .path }}
  {{- if or (not .writable) (and (not $writable) (ne .path "/run/kata-deploy")) }}
  readOnly: true
  {{- end }}
{{- end }}
- name: installer-config
  mountPath: /etc/kata-deploy
  readOnly: true
{{- end -}}

{{/*
kata-deploy.installer.env: environment of every installer container.
Usage: {{- include "kata-deploy.installer.env" . | nindent 12 }}
*/}}
{{- define "kata-deploy.installer.env" -}}
- name: KATA_INSTALLER_HOST_ROOT
  value: /host
- name: KATA_INSTALLER_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: KATA_INSTALLER_RELEASE
  value: {{ .Release.Name | quote }}
- name: KATA_INSTALLER_CONFIG_HASH
  value: {{ include "kata-deploy.installer.configHash" . | quote }}
{{- end -}}

{{/*
kata-deploy.installer.configHash: 16 hex digits naming what the installer puts on a
node (installer.yaml and the installer image). It is recorded in each node's result
annotation (docs/contracts.md), so a node installed with other values or another image
can be told apart from one that is up to date.
Usage: {{ include "kata-deploy.installer.configHash" . }}
*/}}
{{/*
kata-deploy.installer.resultAnnotation: the key of the annotation each node's installer
writes with its result (node-installer report.py, docs/contracts.md); the name part is
kept within 63 characters like report.annotation_key().
Usage: {{ include "kata-deploy.installer.resultAnnotation" . }}
*/}}
{{- define "kata-deploy.installer.resultAnnotation" -}}
{{- $name := printf "kata-deploy.%s%s" .Release.Name (include "kata-deploy.suffix" .) -}}
{{- if gt (len $name) 63 -}}
{{- $name = printf "%s-%s" (regexReplaceAll "[.-]+$" (trunc 54 $name) "") (sha256sum $name | trunc 8) -}}
{{- end -}}
{{- printf "katacontainers.io/%s" $name -}}
{{- end -}}

{{- define "kata-deploy.installer.configHash" -}}
{{- printf "%s\n%s" (include "kata-deploy.installer.config" .) (include "kata-deploy.image" (list . .Values.image)) | sha256sum | trunc 16 -}}
{{- end -}}

{{/*
kata-deploy.installer.container: one installer container running one stage.
Arguments: root context, container name, stage, security profile:
  "readonly"   reads the host only: no privilege, no capability, read-only mounts;
  "api"        talks to the API server only (label/unlabel): like readonly;
  "privileged" changes host files and restarts the container runtime through the
               host's systemd (hostPID): privileged.
Every installer container gets the projected ServiceAccount token: a stage that fails
records its result on its own Node and as an Event (report.py), whichever stage it is.
Usage: {{- include "kata-deploy.installer.container" (list . "cri" "cri" "privileged") | nindent 8 }}
*/}}
{{- define "kata-deploy.installer.container" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $stage := index . 2 -}}
{{- $profile := index . 3 -}}
- name: {{ $name }}
  image: {{ include "kata-deploy.image" (list $root $root.Values.image) }}
  imagePullPolicy: {{ $root.Values.imagePullPolicy }}
  command: [kata-installer]
  args: [--config, /etc/kata-deploy/installer.yaml, {{ $stage }}]
  env:
    {{- include "kata-deploy.installer.env" $root | nindent 4 }}
  securityContext:
  {{- if eq $profile "privileged" }}
    # Changes host files (SELinux-enforcing hosts allow that only to privileged
    # containers); the cri stages restart the runtime through the host's systemd (hostPID).
    privileged: true
  {{- else }}
    privileged: false
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: [ALL]
    seccompProfile:
      type: RuntimeDefault
  {{- end }}
  volumeMounts:
    {{- include "kata-deploy.installer.volumeMounts" (list $root (eq $profile "privileged")) | trim | nindent 4 }}
    - name: kube-api-access
      mountPath: /var/run/secrets/kubernetes.io/serviceaccount
      readOnly: true
{{- end -}}
