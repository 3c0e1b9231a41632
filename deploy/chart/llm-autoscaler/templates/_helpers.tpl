{{/* The chart's name, for the app.kubernetes.io/name label. */}}
{{- define "llm-autoscaler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The name of every object: the release's, unless it lacks the chart's name. */}}
{{- define "llm-autoscaler.fullname" -}}
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

{{/* What selects the daemon's pods; a Deployment's selector cannot change after install. */}}
{{- define "llm-autoscaler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-autoscaler.name" . }}
{{- end }}

{{/* Every object's labels: the selector's and the four Helm's conventions add. */}}
{{- define "llm-autoscaler.labels" -}}
{{ include "llm-autoscaler.selectorLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llm-autoscaler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llm-autoscaler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: with serviceAccount.create false, name the ServiceAccount the daemon runs as" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* values.config parsed, as JSON (include ... | fromJson): text (values.schema.json says so),
so that a release's config replaces the default whole instead of being merged into it key by key. */}}
{{- define "llm-autoscaler.config" -}}
{{- $text := required "config: the daemon's config as YAML text (config: |, or --set-file config=FILE)" .Values.config }}
{{- $config := fromYaml $text }}
{{- if hasKey $config "Error" }}
{{- fail (printf "config: not a YAML mapping: %s" (get $config "Error")) }}
{{- end }}
{{- toJson $config }}
{{- end }}

{{/* The namespaces the config's models live in, sorted, one each: the managed namespaces. */}}
{{- define "llm-autoscaler.namespaces" -}}
{{- $namespaces := list }}
{{- range (include "llm-autoscaler.config" . | fromJson).models }}
{{- $namespaces = append $namespaces (required "config: models[].namespace is required" .namespace) }}
{{- end }}
{{- $namespaces | uniq | sortAlpha | toJson }}
{{- end }}
