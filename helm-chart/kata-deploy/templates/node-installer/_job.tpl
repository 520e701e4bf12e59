{{/*
kata-deploy.installer.job: one per-node Job template (C6) as the dispatcher clones it:
the dispatcher sets nodeName, the name suffix, its labels and the ownerReference.
The stages run in the seed's order as initContainers, the last one as the main
container. Only the label/unlabel container gets a ServiceAccount token.
Arguments: root context, stage ("install" or "cleanup").
Usage: {{ include "kata-deploy.installer.job" (list . "install") }}
*/}}
{{- define "kata-deploy.installer.job" -}}
{{- $root := index . 0 -}}
{{- $stage := index . 1 -}}
{{- $init := list (list "host-check" "readonly") (list "artifacts" "privileged") (list "cri" "privileged") -}}
{{- $main := list "label" "api" -}}
{{- if eq $stage "cleanup" -}}
{{- $init = list (list "unlabel" "api") (list "revert-cri" "privileged") -}}
{{- $main = list "remove-artifacts" "privileged" -}}
{{- end -}}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "kata-deploy.installer.jobNamePrefix" (list $root $stage) }}
  namespace: {{ $root.Release.Namespace | quote }}
  labels:
    {{- include "kata-deploy.installer.jobLabels" $root | nindent 4 }}
spec:
  backoffLimit: {{ $root.Values.job.backoffLimit | int64 }}
  activeDeadlineSeconds: {{ $root.Values.job.activeDeadlineSeconds | int64 }}
  ttlSecondsAfterFinished: {{ $root.Values.job.ttlSecondsAfterFinished | int64 }}
  template:
    metadata:
      labels:
        {{- include "kata-deploy.installer.jobLabels" $root | nindent 8 }}
        {{- with $root.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $root.Values.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      restartPolicy: Never
      serviceAccountName: {{ include "kata-deploy.installer.serviceAccountName" $root | quote }}
      automountServiceAccountToken: false
      # The cri stages restart the host's container runtime through the host's systemd.
      hostPID: true
      {{- with $root.Values.priorityClassName }}
      priorityClassName: {{ . | quote }}
      {{- end }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with concat ($root.Values.job.tolerations | default list) ($root.Values.tolerations | default list) }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      initContainers:
        {{- range $init }}
        {{- include "kata-deploy.installer.container" (list $root (index . 0) (index . 0) (index . 1)) | nindent 8 }}
        {{- end }}
      containers:
        {{- include "kata-deploy.installer.container" (list $root (index $main 0) (index $main 0) (index $main 1)) | nindent 8 }}
      volumes:
        {{- include "kata-deploy.installer.volumes" $root | trim | nindent 8 }}
        - name: kube-api-access
          projected:
            sources:
              - serviceAccountToken:
                  path: token
                  expirationSeconds: 3607
              - configMap:
                  name: kube-root-ca.crt
                  items:
                    - key: ca.crt
                      path: ca.crt
              - downwardAPI:
                  items:
                    - path: namespace
                      fieldRef:
                        fieldPath: metadata.namespace
{{- end -}}


{{/*
kata-deploy.installer.jobLabels: labels of the per-node Jobs and their pods. Not
"managed-by: Helm": the dispatcher creates them, Helm never sees them.
Usage: {{ include "kata-deploy.installer.jobLabels" . }}
*/}}
{{- define "kata-deploy.installer.jobLabels" -}}
{{ include "kata-deploy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: installer
{{- end -}}
