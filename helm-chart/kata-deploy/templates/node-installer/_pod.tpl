{{- /*
What every installer pod shares, whether the DaemonSet's (daemonset.yaml) or a per-node
Job's (_job.tpl): host mounts, environment, the stage container, and the configuration
hash and result annotation the installer records on its node.
*/ -}}

{{/*
kata-deploy.installer.hostPaths: the host directories the installer mounts, each at
"/host<path>" (docs/contracts.md), as JSON {"paths": [{name, path, type, writable}]};
use with fromJson (see kata-deploy.customRuntimes).
writable marks the paths the mutating stages change; read-only stages mount all of them
read-only. /etc is mounted whole because containerd, CRI-O and k0s keep their configs in
different subdirectories and only host-check knows which this node has; the installer
writes only files its manifest records. /run/systemd (read-only, no type check: hosts
without systemd do not have it) is how `--restart auto` sees that the host runs systemd
(/run/systemd/system), which it then drives through nsenter into PID 1 (hostPID).
Usage: {{ range (include "kata-deploy.installer.hostPaths" . | fromJson).paths }}
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
{{- dict "paths" $paths | toJson -}}
{{- end -}}

{{/*
kata-deploy.installer.volumes: the pod volumes every installer pod has: the host
directories and the installer configuration.
Usage: {{- include "kata-deploy.installer.volumes" . | nindent 8 }}
*/}}
{{- define "kata-deploy.installer.volumes" -}}
{{- range (include "kata-deploy.installer.hostPaths" . | fromJson).paths }}
- name: {{ .name }}
  hostPath:
    path: {{ .path | quote }}
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
{{- range (include "kata-deploy.installer.hostPaths" $root | fromJson).paths }}
- name: {{ .name }}
  mountPath: {{ printf "/host%s" .path | quote }}
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

{{/*
kata-deploy.installer.configHash: 16 hex digits naming what the installer puts on a
node (installer.yaml and the installer image). It is recorded in each node's result
annotation (docs/contracts.md), so a node installed with other values or another image
can be told apart from one that is up to date.
Usage: {{ include "kata-deploy.installer.configHash" . }}
*/}}
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
  image: {{ include "kata-deploy.image" (list $root $root.Values.image) | quote }}
  imagePullPolicy: {{ $root.Values.imagePullPolicy }}
  command: [kata-installer]
  args: [--config, /etc/kata-deploy/installer.yaml, {{ $stage }}]
  env:
    {{- include "kata-deploy.installer.env" $root | nindent 4 }}
  {{- with $root.Values.installer.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
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
