{{/*
kata-deploy.dispatcher.args: the dispatcher's command line for one kind of run, as
JSON {"args": [...]}, the dispatcher command first, then its flags; use with fromJson
(see kata-deploy.customRuntimes).
  install:   job mode's post-install,post-upgrade hook (`install`).
  cleanup:   job mode's pre-delete hook (`cleanup`); deletes the reconcile CronJob first.
  reconcile: the job.reconcile CronJob (`install`); always skipping the nodes already
             done, and stepping aside while another run holds the Lease. Its Job
             name is generated, so it comes from the pod's job-name label
             (KATA_DISPATCHER_OWNER_JOB, set in the job spec).
  teardown:  DaemonSet mode's first pre-delete hook (`delete-daemonset NAME`).
  sweep:     DaemonSet mode's second pre-delete hook (`cleanup --skip-clean`): a cleanup
             Job on every node that still carries the release's result annotation once
             the DaemonSet is gone (an installer pod killed while reverting, or one that
             never got to revert); every other node is skipped.
Every run but the teardown holds the release's Lease, so no two run at once.
Arguments: root context, stage.
*/}}
{{- define "kata-deploy.dispatcher.args" -}}
{{- $root := index . 0 -}}
{{- $stage := index . 1 -}}
{{- $args := list -}}
{{- if eq $stage "teardown" -}}
{{- $args = list
  "delete-daemonset" (include "kata-deploy.installer.daemonSetName" $root)
  "--timeout" ($root.Values.uninstallTimeoutSeconds | int64 | toString) -}}
{{- else -}}
{{- $selection := $root.Values.job -}}
{{- $template := $stage -}}
{{- if eq $stage "cleanup" -}}
{{- $selection = $root.Values.job.cleanup -}}
{{- else if eq $stage "reconcile" -}}
{{- $template = "install" -}}
{{- else if eq $stage "sweep" -}}
{{- $template = "cleanup" -}}
{{- end -}}
{{- $args = list $template "--template" (printf "/etc/kata-deploy/jobs/%s-job.yaml" $template) -}}
{{- if eq $stage "install" -}}
{{- $args = concat $args (list "--owner-job" (include "kata-deploy.dispatcher.installJobName" $root)) -}}
{{- else if eq $stage "cleanup" -}}
{{- $args = concat $args (list "--owner-job" (include "kata-deploy.dispatcher.cleanupJobName" $root)) -}}
{{- else if eq $stage "sweep" -}}
{{- $args = concat $args (list "--owner-job" (include "kata-deploy.dispatcher.sweepJobName" $root)) -}}
{{- end -}}
{{- $args = concat $args (list
  "--parallelism" ($root.Values.job.parallelism | int64 | toString)
  "--release" $root.Release.Name
  "--anchor-configmap" (include "kata-deploy.installer.jobTemplatesName" $root)
  "--max-failed-nodes" (include "kata-deploy.dispatcher.maxFailedNodes" $root)) -}}
{{- if eq $stage "sweep" -}}
{{- $args = concat $args (list
  "--skip-clean" "--result-annotation" (include "kata-deploy.installer.resultAnnotation" $root)) -}}
{{- else -}}
{{- $args = concat $args (list
  "--wait-for-nodes" ($root.Values.job.waitForNodesSeconds | int64 | toString)) -}}
{{- $args = concat $args (include "kata-deploy.dispatcher.selectionArgs" $selection | fromJson).args -}}
{{- end -}}
{{- if or (eq $stage "reconcile") (and (eq $stage "install") (not $root.Values.job.reinstall)) -}}
{{- $args = concat $args (list
  "--skip-done"
  "--result-annotation" (include "kata-deploy.installer.resultAnnotation" $root)
  "--config-hash" (include "kata-deploy.installer.configHash" $root)) -}}
{{- end -}}
{{- if $root.Values.job.inspectFailedPods }}{{ $args = append $args "--inspect-pods" }}{{ end -}}
{{- $args = concat $args (list "--lease" (include "kata-deploy.dispatcher.leaseName" $root)) -}}
{{- if eq $stage "reconcile" }}{{ $args = concat $args (list "--lease-mode" "yield") }}{{ end -}}
{{- if eq $stage "cleanup" -}}
{{- $args = concat $args (list "--remove-install-jobs" (include "kata-deploy.dispatcher.installJobName" $root)) -}}
{{- if $root.Values.job.reconcile.enabled -}}
{{- $args = concat $args (list "--delete-cronjob" (include "kata-deploy.dispatcher.reconcileName" $root)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "args" $args) -}}
{{- end -}}

{{/*
kata-deploy.dispatcher.maxFailedNodes: job.maxFailedNodes as the dispatcher's
--max-failed-nodes reads it: a percentage as given, a count as a plain integer (Helm reads
a values file's numbers as floats, and a float of a million or more prints as 1e+06).
Usage: {{ include "kata-deploy.dispatcher.maxFailedNodes" . }}
*/}}
{{- define "kata-deploy.dispatcher.maxFailedNodes" -}}
{{- if kindIs "string" .Values.job.maxFailedNodes -}}
{{- .Values.job.maxFailedNodes -}}
{{- else -}}
{{- .Values.job.maxFailedNodes | int64 -}}
{{- end -}}
{{- end -}}

{{/*
kata-deploy.dispatcher.jobSpec: the `spec` of a dispatcher Job (hook Job, or the
reconcile CronJob's jobTemplate): one unprivileged pod that never retries.
Arguments: root context, stage.
*/}}
{{- define "kata-deploy.dispatcher.jobSpec" -}}
{{- $root := index . 0 -}}
{{- $stage := index . 1 -}}
{{- $deadline := $root.Values.job.dispatcherDeadlineSeconds -}}
{{- if eq $stage "teardown" -}}
{{- /* The dispatcher's own --timeout ends first, so its summary is in the Job's log. */ -}}
{{- $deadline = add $root.Values.uninstallTimeoutSeconds 30 -}}
{{- end -}}
{{- $args := (include "kata-deploy.dispatcher.args" (list $root $stage) | fromJson).args -}}
backoffLimit: 0
activeDeadlineSeconds: {{ $deadline | int64 }}
ttlSecondsAfterFinished: {{ $root.Values.job.ttlSecondsAfterFinished | int64 }}
template:
  metadata:
    labels:
      {{- include "kata-deploy.selectorLabels" $root | nindent 6 }}
      app.kubernetes.io/component: dispatcher
      {{- with $root.Values.podLabels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with $root.Values.podAnnotations }}
    annotations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
  spec:
    restartPolicy: Never
    serviceAccountName: {{ include "kata-deploy.dispatcher.serviceAccountName" $root | quote }}
    {{- with $root.Values.imagePullSecrets }}
    imagePullSecrets:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $root.Values.job.dispatcherPriorityClassName }}
    priorityClassName: {{ . | quote }}
    {{- end }}
    {{- with $root.Values.job.dispatcherNodeSelector }}
    nodeSelector:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $root.Values.job.dispatcherTolerations }}
    tolerations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    securityContext:
      runAsNonRoot: true
      runAsUser: 65532
      runAsGroup: 65532
      seccompProfile:
        type: RuntimeDefault
    containers:
      - name: dispatcher
        image: {{ include "kata-deploy.image" (list $root $root.Values.job.dispatcherImage) | quote }}
        imagePullPolicy: {{ $root.Values.imagePullPolicy }}
        command: [kata-dispatcher]
        args:
          {{- toYaml $args | nindent 10 }}
        env:
          - name: POD_NAMESPACE
            valueFrom:
              fieldRef:
                fieldPath: metadata.namespace
          {{- if eq $stage "reconcile" }}
          - name: KATA_DISPATCHER_OWNER_JOB
            valueFrom:
              fieldRef:
                fieldPath: metadata.labels['batch.kubernetes.io/job-name']
          {{- end }}
        {{- with $root.Values.job.dispatcherResources }}
        resources:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        securityContext:
          runAsNonRoot: true
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities:
            drop: [ALL]
          seccompProfile:
            type: RuntimeDefault
        {{- if ne $stage "teardown" }}
        volumeMounts:
          - name: job-templates
            mountPath: /etc/kata-deploy/jobs
            readOnly: true
    volumes:
      - name: job-templates
        configMap:
          name: {{ include "kata-deploy.installer.jobTemplatesName" $root }}
        {{- end }}
{{- end -}}

{{/*
kata-deploy.dispatcher.job: one dispatcher hook Job (C6).
  install:  job mode, post-install,post-upgrade; deleted only before the next one is
            created (its per-node Jobs, co-owned by the job-templates ConfigMap, stay for
            the next run to adopt), so a failed run stays inspectable.
  cleanup:  job mode, pre-delete; after a successful run it also deletes the install
            dispatcher Job and the release's install-stage per-node Jobs (Helm does not
            delete hooks on uninstall), and Helm deletes it (hook-succeeded), so nothing
            is left (C13).
  teardown: DaemonSet mode, pre-delete (C5, C13); deletes the installer DaemonSet with
            foreground propagation and waits until it is gone, so every installer pod
            reverts its node while the installer's ServiceAccount and RBAC still exist
            (Helm deletes those only after its pre-delete hooks). No volumes: it needs
            nothing but the API.
  sweep:    DaemonSet mode, pre-delete, weight 1 so it runs once the teardown succeeded:
            a cleanup Job on each node that still carries the release's result
            annotation, which the DaemonSet-mode installer deletes only at the end of a
            whole revert; nothing on the other nodes.
Arguments: root context, stage ("install", "cleanup", "teardown" or "sweep").
Usage: {{ include "kata-deploy.dispatcher.job" (list . "install") }}
*/}}
{{- define "kata-deploy.dispatcher.job" -}}
{{- $root := index . 0 -}}
{{- $stage := index . 1 -}}
{{- $name := include "kata-deploy.dispatcher.installJobName" $root -}}
{{- $hook := "post-install,post-upgrade" -}}
{{- $weight := "0" -}}
{{- $deletePolicy := "before-hook-creation" -}}
{{- if ne $stage "install" -}}
{{- $hook = "pre-delete" -}}
{{- $deletePolicy = "before-hook-creation,hook-succeeded" -}}
{{- end -}}
{{- if eq $stage "cleanup" -}}
{{- $name = include "kata-deploy.dispatcher.cleanupJobName" $root -}}
{{- else if eq $stage "teardown" -}}
{{- $name = include "kata-deploy.dispatcher.teardownJobName" $root -}}
{{- else if eq $stage "sweep" -}}
{{- $name = include "kata-deploy.dispatcher.sweepJobName" $root -}}
{{- $weight = "1" -}}
{{- end -}}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace | quote }}
  labels:
    {{- include "kata-deploy.componentLabels" (list $root "dispatcher") | nindent 4 }}
  annotations:
    helm.sh/hook: {{ $hook }}
    helm.sh/hook-weight: {{ $weight | quote }}
    helm.sh/hook-delete-policy: {{ $deletePolicy }}
spec:
  {{- include "kata-deploy.dispatcher.jobSpec" (list $root $stage) | nindent 2 }}
{{- end -}}
