{{/* Chart name. */}}
{{- define "sigil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped base name: the release name if it already contains "sigil", else <release>-sigil. */}}
{{- define "sigil.fullname" -}}
{{- if contains "sigil" .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-sigil" .Release.Name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "sigil.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades. Call with (dict "ctx" . "component" "operator"). */}}
{{- define "sigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sigil.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/* Every object's labels. Call with (dict "ctx" . "component" "operator"); component may be empty. */}}
{{- define "sigil.labels" -}}
{{ include "sigil.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ include "sigil.chart" .ctx }}
{{- end }}

{{- define "sigil.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "sigil.caSecret" -}}
{{- default .Values.ca.bootstrapSecret .Values.ca.existingSecret }}
{{- end }}

{{- define "sigil.webhookName" -}}{{ include "sigil.fullname" . }}-webhook{{- end }}
{{- define "sigil.operatorName" -}}{{ include "sigil.fullname" . }}-operator{{- end }}

{{/* The restricted pod and container security contexts both Deployments use. */}}
{{- define "sigil.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}
{{- define "sigil.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}

{{/* The one watched namespace in Namespace mode, checked; empty in Cluster mode. */}}
{{- define "sigil.watchNamespace" -}}
{{- if eq .Values.scope.mode "Namespace" }}
{{- $ns := required "scope.namespace is required when scope.mode is Namespace: name the one namespace Sigil should serve" .Values.scope.namespace }}
{{- if or (eq $ns "kube-system") (eq $ns .Release.Namespace) }}
{{- fail (printf "scope.namespace %q is never injected (kube-system and the release namespace are excluded): install Sigil in its own namespace and name the application namespace here" $ns) }}
{{- end }}
{{- $ns }}
{{- end }}
{{- end }}

{{/* The webhook ServiceAccount's username, as the API server reports it in userInfo. */}}
{{- define "sigil.webhookUsername" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "sigil.webhookName" . }}
{{- end }}

{{/* The ConfigMap holding the CA bundle of the API server's webhook client certificate, checked. */}}
{{- define "sigil.webhookClientCaConfigMap" -}}
{{- with .Values.webhook.clientAuth }}
{{- if and .caBundle .existingConfigMap }}
{{- fail "webhook.clientAuth: set caBundle or existingConfigMap, not both" }}
{{- end }}
{{- if not (or .caBundle .existingConfigMap) }}
{{- fail "webhook.clientAuth.enabled needs the CA that signs the API server's webhook client certificate: set webhook.clientAuth.caBundle (PEM) or webhook.clientAuth.existingConfigMap (key ca.crt)" }}
{{- end }}
{{- if not .allowedNames }}
{{- fail "webhook.clientAuth.enabled needs webhook.clientAuth.allowedNames (the client certificate's CN or DNS SAN): a CA that also signs other clients would otherwise let any of them call the webhook" }}
{{- end }}
{{- end }}
{{- default (printf "%s-client-ca" (include "sigil.webhookName" .)) .Values.webhook.clientAuth.existingConfigMap }}
{{- end }}

{{/*
A memory quantity in whole MiB, rounded down: a Kubernetes quantity with a binary (Ki, Mi, Gi, Ti)
or decimal (k, M, G, T) suffix or none (bytes), decimals allowed, or a number (bytes). Call with the
quantity and the value's path for the message when it is none of those:
(dict "q" "256Mi" "at" "operator.resources.limits.memory").
*/}}
{{- define "sigil.memoryMiB" -}}
{{- $units := dict "" 1.0 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "k" 1000.0 "M" 1000000.0 "G" 1000000000.0 "T" 1000000000000.0 -}}
{{- if or (kindIs "float64" .q) (kindIs "int" .q) (kindIs "int64" .q) -}}
{{- floor (divf (float64 .q) 1048576.0) | int64 -}}
{{- else -}}
{{- $q := toString .q -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $q -}}
{{- $unit := trimPrefix $number $q -}}
{{- if or (not $number) (not (hasKey $units $unit)) -}}
{{- fail (printf "%s is %q: write a memory quantity such as 384Mi, 1Gi or 1.5Gi" .at $q) -}}
{{- end -}}
{{- floor (divf (mulf (float64 $number) (get $units $unit)) 1048576.0) | int64 -}}
{{- end -}}
{{- end }}

{{/*
A component's Node flags: its nodeArgs, then, when it has a memory limit and nodeArgs sets no heap
size, --max-old-space-size from that limit. Node sizes V8's heap from the container's limit on its
own, but for 256Mi it sets a heap limit of 259 MiB: the heap could grow past the container before
V8 collected hard, and the kernel kills the container instead. The old space gets the limit less
96 MiB (what Node's binary pages, about 44 MiB, its native memory, about 20, and the young
generation, up to 24 at 8 MiB semi-spaces, take beside it, measured by make bench), and at least
half the limit. Call with the component's values and its name.
*/}}
{{- define "sigil.nodeArgs" -}}
{{- $args := .values.nodeArgs | default list -}}
{{- $limit := dig "limits" "memory" "" (.values.resources | default dict) -}}
{{- $sized := false -}}
{{- range $args }}{{- if hasPrefix "--max-old-space-size" . }}{{- $sized = true -}}{{- end }}{{- end }}
{{- if and $limit (not $sized) -}}
{{- $mib := include "sigil.memoryMiB" (dict "q" $limit "at" (printf "%s.resources.limits.memory" .name)) | atoi -}}
{{- if lt $mib 96 -}}
{{- fail (printf "%s.resources.limits.memory is %v, below 96Mi: each of Sigil's processes takes about 64 MiB at rest" .name $limit) -}}
{{- end -}}
{{- $args = append $args (printf "--max-old-space-size=%d" (max (sub $mib 96) (div $mib 2))) -}}
{{- end -}}
{{- toJson $args -}}
{{- end }}
