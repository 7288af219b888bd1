{{/*
RBAC rules rendered from rbac-rules.yaml, the single source of truth (see that file).
Usage: include "ingress-failover.rbacRules" (dict "root" $ "scope" "watched")
       include "ingress-failover.rbacRules" (dict "root" $ "scope" "operatorNamespace")
*/}}
{{- define "ingress-failover.rbacRules" -}}
{{- $rules := .root.Files.Get "rbac-rules.yaml" | fromYamlArray }}
{{- range $rules }}
{{- $feature := true }}
{{- if eq (default "" .feature) "externalDNS" }}{{ $feature = $.root.Values.externalDNS.enabled }}{{ end }}
{{- if eq (default "" .feature) "gatewayAPI" }}{{ $feature = $.root.Values.gatewayAPI.enabled }}{{ end }}
{{- if and $feature (eq (default "watched" .scope) $.scope) }}
- apiGroups: [{{ .apiGroup | quote }}]
  resources: [{{ .resource | quote }}]
  verbs: [{{ range $i, $v := .verbs }}{{ if $i }}, {{ end }}{{ $v | quote }}{{ end }}]
{{- end }}
{{- end }}
{{- end }}
