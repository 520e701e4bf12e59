{{/*
kata-deploy.dispatcher.job: one dispatcher hook Job (C6).
  install:  job mode, post-install,post-upgrade; deleted only before the next one is
            created, so its per-node Jobs (owned by it) live until their TTL and a failed
            run stays inspectable.
  cleanup:  job mode, pre-delete; after a successful run it also deletes the install
            dispatcher Job and the release's install-stage per-node Jobs (Helm does not
            delete hooks on uninstall), and Helm deletes it (hook-succeeded), so nothing
            is left (C13).
  teardown: DaemonSet mode, pre-delete (C5, C13); deletes the installer DaemonSet with
            foreground propagation and waits until it is gone, so every installer pod
            reverts its node while the installer's ServiceAccount and RBAC still exist
            (Helm deletes those only after its pre-delete hooks). No volumes: it needs
            nothing but the API.
Arguments: root context, stage ("install", "cleanup" or "teardown").
Usage: {{ include "kata-deploy.dispatcher.job" (list . "install") }}
*/}}
{{- define "kata-deploy.dispatcher.job" -}}
{{- $root := index . 0 -}}
{{- $stage := index . 1 -}}
{{- $name := include "kata-deploy.dispatcher.installJobName" $root -}}
{{- $selection := $root.Values.job -}}
{{- $hook := "post-install,post-upgrade" -}}
{{- $deletePolicy := "before-hook-creation" -}}
{{- $deadline := $root.Values.job.dispatcherDeadlineSeconds -}}
{{- if ne $stage "install" -}}
{{- $hook = "pre-delete" -}}
{{- $deletePolicy = "before-hook-creation,hook-succeeded" -}}
{{- end -}}
{{- $args := list -}}
{{- if eq $stage "teardown" -}}
{{- $name = include "kata-deploy.dispatcher.teardownJobName" $root -}}
{{- /* The dispatcher's own --timeout ends first, so its summary is in the Job's log. */ -}}
{{- $deadline = add $root.Values.uninstallTimeoutSeconds 30 -}}
{{- $args = list
  "--delete-daemonset" (include "kata-deploy.installer.daemonSetName" $root)
  "--timeout" ($root.Values.uninstallTimeoutSeconds | toString) -}}
{{- else -}}
{{- if eq $stage "cleanup" -}}
{{- $name = include "kata-deploy.dispatcher.cleanupJobName" $root -}}
{{- $selection = $root.Values.job.cleanup -}}
{{- end -}}
{{- $args = list
  "--template" (printf "/etc/kata-deploy/jobs/%s-job.yaml" $stage)
  "--owner-job" $name
  "--parallelism" ($root.Values.job.parallelism | toString)
  "--stage" $stage
  "--release" $root.Release.Name
  "--anchor-configmap" (include "kata-deploy.installer.jobTemplatesName" $root)
  "--max-failed-nodes" ($root.Values.job.maxFailedNodes | toString)
  "--wait-for-nodes" ($root.Values.job.waitForNodesSeconds | toString) -}}
{{- $args = concat $args (include "kata-deploy.dispatcher.selectionArgs" $selection | fromYaml).args -}}
{{- if and (eq $stage "install") (not $root.Values.job.reinstall) -}}
{{- $args = concat $args (list
  "--skip-done"
  "--result-annotation" (include "kata-deploy.installer.resultAnnotation" $root)
  "--config-hash" (include "kata-deploy.installer.configHash" $root)) -}}
{{- end -}}
{{- if $root.Values.job.inspectFailedPods }}{{ $args = append $args "--inspect-pods" }}{{ end -}}
{{- if eq $stage "cleanup" }}{{ $args = concat $args (list "--remove-install-jobs" (include "kata-deploy.dispatcher.installJobName" $root)) }}{{ end -}}
{{- end -}}
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
  activeDeadlineSeconds: {{ $deadline }}
  ttlSecondsAfterFinished: {{ $root.Values.job.ttlSecondsAfterFinished }}
  template:
    metadata:
      labels:
        {{- include "kata-deploy.selectorLabels" $root | nindent 8 }}
        app.kubernetes.io/component: dispatcher
        {{- with $root.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $root.Values.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      restartPolicy: Never
      serviceAccountName: {{ include "kata-deploy.dispatcher.serviceAccountName" $root }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.job.dispatcherPriorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with $root.Values.job.dispatcherNodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.job.dispatcherTolerations }}
      tolerations:
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
          {{- with $root.Values.job.dispatcherResources }}
          resources:
            {{- toYaml . | nindent 12 }}
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
