{{- /*
The labels every object carries (app.kubernetes.io/*, helm.sh/chart) and the subset
that selects a release's pods.
*/ -}}

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
app.kubernetes.io/name: {{ include "kata-deploy.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
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
