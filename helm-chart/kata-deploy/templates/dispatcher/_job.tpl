{{/*
kata-deploy.dispatcher.job: one dispatcher hook Job (C6).
  install: post-install,post-upgrade; deleted only before the next one is created, so
           its per-node Jobs (owned by it) live until their TTL and a failed run stays
           inspectable.
  cleanup: pre-delete; after a successful run it also deletes the install dispatcher Job
           and the release's install-stage per-node Jobs (Helm does not delete hooks on
           uninstall), and Helm deletes it (hook-succeeded), so nothing is left (C13).
Arguments: root context, stage ("install" or "cleanup").
Usage: {{ include "kata-deploy.dispatcher.job" (list . "install") }}
*/}}
{{- define "kata-deploy.dispatcher.job" -}}
{{- $root := index . 0 -}}
{{- $stage := index . 1 -}}
{{- $name := include "kata-deploy.dispatcher.installJobName" $root -}}
{{- $selection := $root.Values.job -}}
{{- $hook := "post-install,post-upgrade" -}}
{{- $deletePolicy := "before-hook-creation" -}}
{{- if eq $stage "cleanup" -}}
{{- $name = include "kata-deploy.dispatcher.cleanupJobName" $root -}}
{{- $selection = $root.Values.job.cleanup -}}
{{- $hook = "pre-delete" -}}
{{- $deletePolicy = "before-hook-creation,hook-succeeded" -}}
{{- end -}}
{{- $args := list
  "--template" (printf "/etc/kata-deploy/jobs/%s-job.yaml" $stage)
  "--owner-job" $name
  "--parallelism" ($root.Values.job.parallelism | toString)
  "--stage" $stage
  "--release" $root.Release.Name -}}
{{- $args = concat $args (include "kata-deploy.dispatcher.selectionArgs" $selection | fromYaml).args -}}
{{- if $root.Values.job.inspectFailedPods }}{{ $args = append $args "--inspect-pods" }}{{ end -}}
{{- if eq $stage "cleanup" }}{{ $args = concat $args (list "--remove-install-jobs" (include "kata-deploy.dispatcher.installJobName" $root)) }}{{ end -}}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "kata-deploy.componentLabels" (list $root "dispatcher") | nindent 4 }}
  annotations:
    helm.sh/hook: {{ $hook }}
    helm.sh/hook-weight: "0"
    helm.sh/hook-delete-policy: {{ $deletePolicy }}
spec:
  backoffLimit: 0
  activeDeadlineSeconds: {{ $root.Values.job.activeDeadlineSeconds }}
  ttlSecondsAfterFinished: {{ $root.Values.job.ttlSecondsAfterFinished }}
  template:
    metadata:
      labels:
        {{- include "kata-deploy.selectorLabels" $root | nindent 8 }}
        app.kubernetes.io/component: dispatcher
    spec:
      restartPolicy: Never
      serviceAccountName: {{ include "kata-deploy.dispatcher.serviceAccountName" $root }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: dispatcher
          image: {{ include "kata-deploy.image" (list $root $root.Values.job.dispatcherImage) }}
          imagePullPolicy: {{ $root.Values.imagePullPolicy }}
          command: [kata-dispatcher]
          args:
            {{- toYaml $args | nindent 12 }}
          env:
            - name: POD_NAMESPACE
              valueFrom:
                fieldRef:
                  fieldPath: metadata.namespace
          securityContext:
            runAsNonRoot: true
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: [ALL]
            seccompProfile:
              type: RuntimeDefault
          volumeMounts:
            - name: job-templates
              mountPath: /etc/kata-deploy/jobs
              readOnly: true
      volumes:
        - name: job-templates
          configMap:
            name: {{ include "kata-deploy.installer.jobTemplatesName" $root }}
{{- end -}}
