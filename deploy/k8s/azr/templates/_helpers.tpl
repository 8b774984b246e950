{{/* Names ----------------------------------------------------------------------------------- */}}
{{- define "azr.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "azr.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<component>": call with (dict "root" $ "component" "gateway") */}}
{{- define "azr.componentName" -}}
{{- printf "%s-%s" (include "azr.fullname" .root | trunc 40 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "azr.secretName" -}}
{{- default (include "azr.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "azr.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "azr.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels ---------------------------------------------------------------------------------- */}}
{{- define "azr.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "azr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: azr
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "gateway") */}}
{{- define "azr.selectorLabels" -}}
app.kubernetes.io/name: {{ include "azr.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "azr.componentLabels" -}}
{{ include "azr.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Images ---------------------------------------------------------------------------------- */}}
{{/* (dict "root" $ "target" "gateway") -> <registry>/azr-gateway:<tag> */}}
{{- define "azr.image" -}}
{{- $v := .root.Values.image -}}
{{- $prefix := ternary "" (printf "%s/" (trimSuffix "/" $v.registry)) (empty $v.registry) -}}
{{- printf "%sazr-%s:%s" $prefix .target (default .root.Chart.AppVersion $v.tag) -}}
{{- end -}}

{{/* Connection URLs --------------------------------------------------------------------------- */}}
{{- define "azr.redisUrl" -}}
{{- if .Values.redis.bundled.enabled -}}
{{- printf "redis://%s:%d/0" (include "azr.componentName" (dict "root" . "component" "redis")) (int .Values.redis.port) -}}
{{- else -}}
{{- required "redis.url is required when redis.bundled.enabled is false" .Values.redis.url -}}
{{- end -}}
{{- end -}}

{{- define "azr.serviceUrl" -}}
{{- printf "http://%s:%d" (include "azr.componentName" (dict "root" .root "component" .component)) (int .port) -}}
{{- end -}}

{{/* Pod pieces shared by every AZR workload --------------------------------------------------- */}}
{{- define "azr.podAnnotations" -}}
checksum/config: {{ include (print .root.Template.BasePath "/configmap.yaml") .root | sha256sum }}
checksum/secret: {{ include (print .root.Template.BasePath "/secret.yaml") .root | sha256sum }}
{{- if and .root.Values.metrics.podAnnotations .port }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "azr.podSecurity" -}}
serviceAccountName: {{ include "azr.serviceAccountName" . }}
# No AZR service talks to the Kubernetes API: no token in any pod.
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* HTTP probes on /healthz (startup, liveness) and /readyz (readiness).
     (dict "port" "http" "startup" .Values.x.startupProbe) */}}
{{- define "azr.httpProbes" -}}
startupProbe:
  httpGet: {path: /healthz, port: {{ .port }}}
  periodSeconds: {{ .startup.periodSeconds | default 5 }}
  timeoutSeconds: {{ .startup.timeoutSeconds | default 3 }}
  failureThreshold: {{ .startup.failureThreshold | default 60 }}
livenessProbe:
  httpGet: {path: /healthz, port: {{ .port }}}
  periodSeconds: 15
  timeoutSeconds: 5
  failureThreshold: 4
readinessProbe:
  httpGet: {path: /readyz, port: {{ .port }}}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 3
{{- end -}}

{{/* Environment every AZR container gets: settings from the ConfigMap, secrets by key.
     (dict "root" $ "database" true "token" true) */}}
{{- define "azr.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "azr.fullname" .root }}
env:
  - name: AZR_REDIS_URL
    valueFrom:
      secretKeyRef: {name: {{ include "azr.secretName" .root }}, key: redis-url}
  {{- if .database }}
  - name: AZR_DATABASE_URL
    valueFrom:
      secretKeyRef: {name: {{ include "azr.secretName" .root }}, key: database-url}
  {{- end }}
  {{- if .token }}
  - name: AZR_API_TOKEN
    valueFrom:
      secretKeyRef: {name: {{ include "azr.secretName" .root }}, key: api-token}
  # the executor's and inference's data routes need it (they listen beyond loopback)
  - name: AZR_SERVICE_TOKEN
    valueFrom:
      secretKeyRef: {name: {{ include "azr.secretName" .root }}, key: api-token}
  {{- end }}
  {{- range $k, $v := .extra }}
  - name: {{ $k }}
    value: {{ $v | toString | quote }}
  {{- end }}
{{- end -}}

{{/* NetworkPolicy peers --------------------------------------------------------------------- */}}
{{- define "azr.peer" -}}
- podSelector:
    matchLabels:
      {{- include "azr.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/* Egress rules every AZR pod needs: DNS. */}}
{{- define "azr.egressDns" -}}
- ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- end -}}

{{- define "azr.egressRedis" -}}
- ports:
    - {port: {{ .Values.redis.port }}, protocol: TCP}
  {{- if .Values.redis.bundled.enabled }}
  to:
    {{- include "azr.peer" (dict "root" . "component" "redis") | nindent 4 }}
  {{- else if .Values.redis.networkPolicyPeers }}
  to:
    {{- toYaml .Values.redis.networkPolicyPeers | nindent 4 }}
  {{- end }}
{{- end -}}

{{- define "azr.ingressMetrics" -}}
{{- if .root.Values.metrics.allowFrom }}
- ports:
    - {port: {{ .port }}, protocol: TCP}
  from:
    {{- toYaml .root.Values.metrics.allowFrom | nindent 4 }}
{{- end }}
{{- end -}}

{{/* KEDA: on when forced, or "auto" and the cluster serves keda.sh/v1alpha1. */}}
{{- define "azr.kedaEnabled" -}}
{{- $mode := toString .Values.executorWorker.autoscaling.keda.enabled -}}
{{- if or (eq $mode "true") (and (eq $mode "auto") (.Capabilities.APIVersions.Has "keda.sh/v1alpha1")) -}}
true
{{- end -}}
{{- end -}}

{{/*
JSON list of the inference pods' URLs through the headless Service (inference.replicas > 1).
*/}}
{{- define "azr.inferenceReplicaUrls" -}}
{{- $name := include "azr.componentName" (dict "root" . "component" "inference") -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.inference.replicas) -}}
{{- $urls = append $urls (printf "http://%s-%d.%s-pods.%s.svc:%v" $name $i $name $.Release.Namespace $.Values.inference.port) -}}
{{- end -}}
{{- toJson $urls -}}
{{- end -}}
