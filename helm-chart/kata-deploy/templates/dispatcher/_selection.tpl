{{- /*
Job mode's node selection (C7): the values' selection blocks turned into the
dispatcher's --nodes / --selector arguments. validate.yaml checks the blocks first.
*/ -}}

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
nodes). Returns JSON {"args": [...]}; use with fromJson (see kata-deploy.customRuntimes).
Usage: {{ (include "kata-deploy.dispatcher.selectionArgs" .Values.job.cleanup | fromJson).args }}
*/}}
{{- define "kata-deploy.dispatcher.selectionArgs" -}}
{{- $args := list -}}
{{- if .nodes -}}
{{- $args = list "--nodes" (join "," .nodes) -}}
{{- else -}}
{{- $selector := include "kata-deploy.compileSelector" . -}}
{{- if $selector }}{{ $args = list "--selector" $selector }}{{ end -}}
{{- end -}}
{{- dict "args" $args | toJson -}}
{{- end -}}
