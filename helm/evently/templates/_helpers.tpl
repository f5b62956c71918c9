{{/*
Chart name, truncated to 63 characters (the DNS label limit for names and label values).
*/}}
{{- define "evently.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name prefix: the release name, plus the chart name unless the release name
already contains it; at most 63 characters.
*/}}
{{- define "evently.fullname" -}}
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

{{/*
Name of a per-role resource: the prefix is shortened so that "<prefix>-<suffix>" stays within 63.
Usage: include "evently.componentName" (dict "root" $ "component" "api")
*/}}
{{- define "evently.componentName" -}}
{{- $suffix := printf "-%s" .component }}
{{- $max := sub 63 (len $suffix) | int }}
{{- printf "%s%s" (include "evently.fullname" .root | trunc $max | trimSuffix "-") $suffix }}
{{- end }}

{{/*
Chart label value: name-version, with "+" (not allowed in label values) replaced.
*/}}
{{- define "evently.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: the immutable subset used by Deployments, Services and policies.
They never include the version or chart, so upgrades do not change selectors.
*/}}
{{- define "evently.selectorLabels" -}}
app.kubernetes.io/name: {{ include "evently.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Selector labels of one role. Usage: include "evently.componentSelectorLabels" (dict "root" $ "component" "api")
*/}}
{{- define "evently.componentSelectorLabels" -}}
{{ include "evently.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Common labels for every resource: selector labels plus version, chart and user labels.
*/}}
{{- define "evently.labels" -}}
helm.sh/chart: {{ include "evently.chart" . }}
{{ include "evently.selectorLabels" . }}
app.kubernetes.io/version: {{ include "evently.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: evently
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Common labels of one role's resources. Usage: include "evently.componentLabels" (dict "root" $ "component" "api")
*/}}
{{- define "evently.componentLabels" -}}
{{ include "evently.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Image tag: image.tag, defaulting to the chart's appVersion.
*/}}
{{- define "evently.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/*
Full image reference; a digest pins the image and wins over the tag.
*/}}
{{- define "evently.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "evently.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
ServiceAccount of the long-running pods.
*/}}
{{- define "evently.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "evently.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
ServiceAccount of the migration hook. Hooks run before release resources exist, so a
chart-created ServiceAccount cannot be used on first install.
*/}}
{{- define "evently.migrateServiceAccountName" -}}
{{- if .Values.migrate.serviceAccountName }}
{{- .Values.migrate.serviceAccountName }}
{{- else if not .Values.serviceAccount.create }}
{{- include "evently.serviceAccountName" . }}
{{- else }}
{{- "default" }}
{{- end }}
{{- end }}

{{/*
Name of the Secret holding DATABASE_URL, AMQP_URL, ADMIN_API_KEY and ENCRYPTION_KEY.
*/}}
{{- define "evently.secretName" -}}
{{- default (include "evently.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/*
Secret data (base64) rendered by the chart when no existingSecret is given. A key left empty in
the values is taken from the release's Secret when it already exists (lookup: upgrades keep it),
else generated. lookup finds nothing without a cluster (`helm template`), so there the keys are new
on every render. The data is computed once per render and kept in .Values: the release Secret, the
migration hook's copy and the checksum annotations must all see the same generated keys.
*/}}
{{- define "evently.secretData" -}}
{{- if not (hasKey .Values.secrets "_rendered") }}
{{- $s := .Values.secrets }}
{{- $current := dict }}
{{- with lookup "v1" "Secret" .Release.Namespace (include "evently.secretName" .) }}
{{- $current = .data | default dict }}
{{- end }}
{{- $data := dict }}
{{- $_ := set $data "DATABASE_URL" (required "secrets.databaseUrl is required unless secrets.existingSecret is set" $s.databaseUrl | b64enc) }}
{{- $_ = set $data "AMQP_URL" (required "secrets.amqpUrl is required unless secrets.existingSecret is set" $s.amqpUrl | b64enc) }}
{{- $_ = set $data "ADMIN_API_KEY" (ternary ($s.adminApiKey | b64enc) (get $current "ADMIN_API_KEY" | default (randAlphaNum 48 | b64enc)) (ne $s.adminApiKey "")) }}
{{- /* randBytes is already base64 text: the application reads that text, so it is encoded again. */}}
{{- $_ = set $data "ENCRYPTION_KEY" (ternary ($s.encryptionKey | b64enc) (get $current "ENCRYPTION_KEY" | default (randBytes 32 | b64enc)) (ne $s.encryptionKey "")) }}
{{- with $s.encryptionPreviousKeys }}
{{- $_ = set $data "ENCRYPTION_PREVIOUS_KEYS" (join "," . | b64enc) }}
{{- end }}
{{- $_ = set .Values.secrets "_rendered" $data }}
{{- end }}
{{- toYaml .Values.secrets._rendered }}
{{- end }}

{{/*
Non-secret configuration: every non-empty entry of .Values.config, as string values.
*/}}
{{- define "evently.configData" -}}
{{- range $key, $value := .Values.config }}
{{- if not (or (eq (toString $value) "") (eq (toString $value) "<nil>")) }}
{{ $key }}: {{ toString $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The HTTP port every role listens on.
*/}}
{{- define "evently.containerPort" -}}
8080
{{- end }}

{{/*
Whether a role runs: its `enabled` value, except that the dispatcher has nothing to do with the
Postgres transport (workers read the outbox themselves), so it is not deployed then.
Call with (dict "root" $ "component" "api"); renders "true" or nothing.
*/}}
{{- define "evently.componentRuns" -}}
{{- $values := index .root.Values .component -}}
{{- $postgresTransport := eq (toString .root.Values.config.QUEUE_TRANSPORT) "postgres" -}}
{{- if and $values.enabled (not (and (eq .component "dispatcher") $postgresTransport)) -}}true{{- end -}}
{{- end }}

{{/*
Whether workers connect to the API Service for the hand-over (QUEUE_HANDOVER_URL): both roles
deployed and worker.handover on, with either transport. Renders "true" or nothing.
*/}}
{{- define "evently.workerHandover" -}}
{{- if and .Values.api.enabled .Values.worker.enabled .Values.worker.handover -}}true{{- end -}}
{{- end }}
