{{- /*
Kubernetes resource quantities (`50m`, `64Mi`, `1e3`, `0.5`) as numbers, so validate.yaml
can hold a request to its limit the way the API server does.
*/ -}}

{{/*
kata-deploy.quantity: the value of one quantity (a string or a number of the values) as a
decimal string, e.g. "0.05" for 50m; use with float64. The schema has already checked the
format, and that it is not negative.
Usage: {{ include "kata-deploy.quantity" "64Mi" | float64 }}
*/}}
{{- define "kata-deploy.quantity" -}}
{{- $text := toString . -}}
{{- $number := regexFind "^[+]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]+)?" $text -}}
{{- $scale := dict
  "" 1.0 "n" 1e-9 "u" 1e-6 "m" 1e-3 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18
  "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0
  "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 -}}
{{- mulf (float64 $number) (index $scale (trimPrefix $number $text) | default 1.0) -}}
{{- end -}}
