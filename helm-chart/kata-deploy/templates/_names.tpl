{{- /*
What the chart calls things: the chart and release names every object name derives
from, the multi-install suffix, the names of each component's objects (shared because
one component's templates refer to another's objects: the dispatcher deletes the
installer DaemonSet and mounts its job templates), and image references.
*/ -}}

{{/*
kata-deploy.name: the chart name, or nameOverride; the app.kubernetes.io/name label
(a selector label, so at most 63 characters) and the second half of fullname.
Usage: {{ include "kata-deploy.name" . }}
*/}}
{{- define "kata-deploy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
kata-deploy.fullname: base name of every object of the release: fullnameOverride when
set; else the release name when it already contains the name (kata-deploy.name), else
"<release>-<name>". 40 characters at most, so the longest name built on it,
"<fullname>-installer-config", stays within 63; per-node Job names use only its first
21 (kata-deploy.installer.jobNamePrefix).
Usage: {{ include "kata-deploy.fullname" . }}
*/}}
{{- define "kata-deploy.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
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
kata-deploy.dispatcher.installJobName: the install dispatcher hook Job (job mode).
Usage: {{ include "kata-deploy.dispatcher.installJobName" . }}
*/}}
{{- define "kata-deploy.dispatcher.installJobName" -}}
{{- printf "%s-job-dispatcher" (include "kata-deploy.fullname" .) -}}
{{- end -}}

{{/*
kata-deploy.dispatcher.cleanupJobName: the cleanup dispatcher hook Job (job mode).
Usage: {{ include "kata-deploy.dispatcher.cleanupJobName" . }}
*/}}
{{- define "kata-deploy.dispatcher.cleanupJobName" -}}
{{- printf "%s-job-cleanup" (include "kata-deploy.fullname" .) -}}
{{- end -}}

{{/*
kata-deploy.dispatcher.teardownJobName: the uninstall hook Job of DaemonSet mode.
Usage: {{ include "kata-deploy.dispatcher.teardownJobName" . }}
*/}}
{{- define "kata-deploy.dispatcher.teardownJobName" -}}
{{- printf "%s-teardown" (include "kata-deploy.fullname" .) -}}
{{- end -}}

{{/*
kata-deploy.dispatcher.sweepJobName: the uninstall hook Job of DaemonSet mode that runs
after the teardown and cleans the nodes whose installer pod did not finish reverting.
Usage: {{ include "kata-deploy.dispatcher.sweepJobName" . }}
*/}}
{{- define "kata-deploy.dispatcher.sweepJobName" -}}
{{- printf "%s-sweep" (include "kata-deploy.fullname" .) -}}
{{- end -}}

{{/*
kata-deploy.dispatcher.reconcileName: the reconcile CronJob (job.reconcile); at most 50
characters, within the 52 a CronJob name may have.
*/}}
{{- define "kata-deploy.dispatcher.reconcileName" -}}
{{- printf "%s-reconcile" (include "kata-deploy.fullname" .) -}}
{{- end -}}

{{/*
kata-deploy.dispatcher.leaseName: the Lease every dispatcher run of the release holds
while it works, so no two run at once (dispatcher lease.py).
*/}}
{{- define "kata-deploy.dispatcher.leaseName" -}}
{{- printf "%s-dispatcher" (include "kata-deploy.fullname" .) -}}
{{- end -}}

{{/*
kata-deploy.dispatcher.serviceAccountName: the ServiceAccount of every dispatcher pod.
Usage: {{ include "kata-deploy.dispatcher.serviceAccountName" . }}
*/}}
{{- define "kata-deploy.dispatcher.serviceAccountName" -}}
{{- printf "%s-dispatcher" (include "kata-deploy.fullname" .) -}}
{{- end -}}

{{/*
kata-deploy.installer.jobNamePrefix: metadata.name of a per-node Job template, the
prefix the dispatcher builds each per-node Job name from (29 characters at most, above).
Usage: {{ include "kata-deploy.installer.jobNamePrefix" (list . "install") }}
*/}}
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

{{/*
kata-deploy.installer.configMapName: the ConfigMap holding installer.yaml.
Usage: {{ include "kata-deploy.installer.configMapName" . }}
*/}}
{{- define "kata-deploy.installer.configMapName" -}}
{{- printf "%s-installer-config" (include "kata-deploy.fullname" .) -}}
{{- end -}}

{{/*
kata-deploy.installer.jobTemplatesName: the ConfigMap of the per-node Job templates.
Usage: {{ include "kata-deploy.installer.jobTemplatesName" . }}
*/}}
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
