{{/* Chart name, shortened to fit label values. */}}
{{- define "ingress-failover.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full resource name prefix. */}}
{{- define "ingress-failover.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ingress-failover.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ingress-failover.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ingress-failover.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ingress-failover.labels" -}}
helm.sh/chart: {{ include "ingress-failover.chart" . }}
{{ include "ingress-failover.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ingress-failover
{{- end }}

{{/* Labels of the helm test pod: deliberately NOT matching the controller's selector (the
metrics Service, the PodDisruptionBudget and the controller's NetworkPolicy must not pick it). */}}
{{- define "ingress-failover.testSelectorLabels" -}}
app.kubernetes.io/name: {{ include "ingress-failover.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
{{- end }}

{{- define "ingress-failover.testLabels" -}}
helm.sh/chart: {{ include "ingress-failover.chart" . }}
{{ include "ingress-failover.testSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ingress-failover
{{- end }}

{{- define "ingress-failover.leaseName" -}}
{{- default (include "ingress-failover.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "ingress-failover.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ingress-failover.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image reference: repository@digest or repository:tag (tag defaults to appVersion). */}}
{{- define "ingress-failover.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "ingress-failover.testImage" -}}
{{- if .Values.tests.image.digest }}
{{- printf "%s@%s" .Values.tests.image.repository .Values.tests.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.tests.image.repository .Values.tests.image.tag }}
{{- end }}
{{- end }}

{{/* The PodSecurity "restricted" pod- and container-level security contexts, shared by the
controller and the helm test pod. */}}
{{- define "ingress-failover.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "ingress-failover.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Fails early on value combinations the schema cannot express. */}}
{{- define "ingress-failover.validate" -}}
{{- if and (eq .Values.rbac.scope "namespace") (ne (len .Values.watchNamespaces) 1) }}
{{- fail "rbac.scope=namespace requires exactly one entry in watchNamespaces (the controller watches all namespaces otherwise)" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 requires leaderElection.enabled=true (two writers would fight)" }}
{{- end }}
{{- end }}
