{{- /*
What the chart calls things: the chart and release names every object name derives
from, the multi-install suffix, the names of each component's objects (shared because
one component's templates refer to another's objects: the dispatcher deletes the
installer DaemonSet and mounts its job templates), and image references.
*/ -}}

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
kata-deploy.image: "<reference>:<tag>", the tag defaulting to the chart's appVersion.
Usage: {{ include "kata-deploy.image" (list . .Values.image) }}
*/}}
{{- define "kata-deploy.image" -}}
{{- $root := index . 0 -}}
{{- $image := index . 1 -}}
{{- printf "%s:%s" $image.reference (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}
