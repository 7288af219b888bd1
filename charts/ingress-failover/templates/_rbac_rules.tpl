{{/*
RBAC rules rendered from rbac-rules.yaml, the single source of truth (see that file).
Usage: include "ingress-failover.rbacRules" (dict "root" $ "scope" "watched")
       include "ingress-failover.rbacRules" (dict "root" $ "scope" "operatorNamespace")
*/}}
{{- define "ingress-failover.rbacRules" -}}
{{- $rules := .root.Files.Get "rbac-rules.yaml" | fromYamlArray }}
{{- range $rules }}
{{- if and (eq (default "watched" .scope) $.scope) (or (not .feature) (and (eq .feature "gatewayAPI") $.root.Values.gatewayAPI.enabled)) }}
- apiGroups: [{{ .apiGroup | quote }}]
  resources: [{{ .resource | quote }}]
  verbs: [{{ range $i, $v := .verbs }}{{ if $i }}, {{ end }}{{ $v | quote }}{{ end }}]
{{- end }}
{{- end }}
{{- end }}
