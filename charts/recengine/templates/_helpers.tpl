{{/*
Names, labels and the pieces every role's template shares. Helpers that need a role take a
dict: (dict "ctx" $ "component" "api").
*/}}

{{/* Chart name, overridable. */}}
{{- define "recengine.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "<release>-<chart>", or the release name alone when it already contains the chart name. */}}
{{- define "recengine.fullname" -}}
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

{{/* Name of one role's resources: "<fullname>-<component>", within 63 characters. */}}
{{- define "recengine.componentName" -}}
{{- $full := include "recengine.fullname" .ctx | trunc (int (sub 62 (len .component))) | trimSuffix "-" -}}
{{- printf "%s-%s" $full .component -}}
{{- end -}}

{{- define "recengine.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every resource; with a component when given: (dict "ctx" $ "component" "api"). */}}
{{- define "recengine.labels" -}}
{{- $ctx := .ctx | default . -}}
helm.sh/chart: {{ include "recengine.chart" $ctx }}
{{ include "recengine.selectorLabels" . }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
app.kubernetes.io/part-of: recengine
{{- with $ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels; the component keeps each role's pods apart. */}}
{{- define "recengine.selectorLabels" -}}
{{- $ctx := .ctx | default . -}}
app.kubernetes.io/name: {{ include "recengine.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{/* ServiceAccount of the trainer, index and API pods. */}}
{{- define "recengine.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "recengine.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* ServiceAccount of the operator. */}}
{{- define "recengine.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "recengine.componentName" (dict "ctx" . "component" "operator")) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
A recengine image: (dict "ctx" $ "image" .Values.api.image) ->
"[registry/]repository:tag" or "[registry/]repository@digest".
*/}}
{{- define "recengine.image" -}}
{{- $ctx := .ctx -}}
{{- $repo := .image.repository -}}
{{- with $ctx.Values.image.registry }}{{ $repo = printf "%s/%s" (trimSuffix "/" .) $repo }}{{ end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repo .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (.image.tag | default $ctx.Values.image.tag | default $ctx.Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- define "recengine.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Name of the Secret with the backend URLs: the existing one, or the chart's. */}}
{{- define "recengine.backendsSecretName" -}}
{{- default (include "recengine.componentName" (dict "ctx" . "component" "backends")) .Values.backends.existingSecret -}}
{{- end -}}

{{- define "recengine.configMapName" -}}
{{- include "recengine.componentName" (dict "ctx" . "component" "config") -}}
{{- end -}}

{{/*
The backend environment of a recengine container: non-secret settings from the ConfigMap, URLs
from the backends Secret (optional keys: an unset URL falls back to its embedded default).
*/}}
{{- define "recengine.backendEnv" -}}
envFrom:
  - configMapRef:
      name: {{ include "recengine.configMapName" . }}
  - secretRef:
      name: {{ include "recengine.backendsSecretName" . }}
{{- end -}}

{{/* Metrics URL of the services: the pod's statsd sidecar, an external statsd, or off. */}}
{{- define "recengine.metricsUrl" -}}
{{- if .Values.statsd.enabled -}}
statsd://127.0.0.1:8125
{{- else -}}
{{- default "off" .Values.statsd.externalUrl -}}
{{- end -}}
{{- end -}}

{{- define "recengine.indexUrl" -}}
{{- printf "http://%s:%v" (include "recengine.componentName" (dict "ctx" . "component" "index")) .Values.index.service.port -}}
{{- end -}}

{{/* Container security context (every container of the chart). */}}
{{- define "recengine.containerSecurityContext" -}}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end -}}

{{- define "recengine.podSecurityContext" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* The statsd sidecar of a trainer, index or API pod. */}}
{{- define "recengine.statsdSidecar" -}}
{{- if .Values.statsd.enabled }}
- name: statsd
  image: {{ printf "%s:%s" .Values.statsd.image.repository .Values.statsd.image.tag }}
  imagePullPolicy: {{ .Values.statsd.image.pullPolicy }}
  command:
    {{- toYaml .Values.statsd.command | nindent 4 }}
  ports:
    - name: statsd
      containerPort: 8125
      protocol: UDP
  {{- include "recengine.containerSecurityContext" . | nindent 2 }}
  resources:
    {{- toYaml .Values.statsd.resources | nindent 4 }}
  volumeMounts:
    - name: statsd-config
      mountPath: /etc/statsd
      readOnly: true
    - name: tmp
      mountPath: /tmp
{{- end }}
{{- end -}}

{{/* Volumes every recengine pod has: /tmp, /data, and the statsd config when the sidecar runs. */}}
{{- define "recengine.podVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
- name: data
{{- if .Values.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ default (include "recengine.componentName" (dict "ctx" . "component" "data")) .Values.persistence.existingClaim }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- if .Values.statsd.enabled }}
- name: statsd-config
  configMap:
    name: {{ include "recengine.componentName" (dict "ctx" . "component" "statsd") }}
{{- end }}
{{- end -}}

{{- define "recengine.appVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: /data
{{- end -}}

{{/* Checksums that roll the pods when their configuration changes. */}}
{{- define "recengine.configChecksums" -}}
checksum/config: {{ include (print .Template.BasePath "/engine/configmap.yaml") . | sha256sum }}
{{- if not .Values.backends.existingSecret }}
checksum/backends: {{ include (print .Template.BasePath "/engine/secret.yaml") . | sha256sum }}
{{- end }}
{{- end -}}

{{- define "recengine.graphiteHost" -}}
{{- if .Values.graphite.host -}}
{{- .Values.graphite.host -}}
{{- else if .Values.graphite.enabled -}}
{{- include "recengine.componentName" (dict "ctx" . "component" "graphite") -}}
{{- end -}}
{{- end -}}

{{- define "recengine.graphiteUrl" -}}
{{- if .Values.graphite.url -}}
{{- .Values.graphite.url -}}
{{- else if .Values.graphite.enabled -}}
{{- printf "http://%s:8080" (include "recengine.componentName" (dict "ctx" . "component" "graphite")) -}}
{{- end -}}
{{- end -}}

{{/*
Embedding version of the index pods. The operator owns it once installed: an upgrade keeps the
live annotation rather than resetting a rolled-out version to the chart's default.
*/}}
{{- define "recengine.index.version" -}}
{{- $version := toString .Values.index.version -}}
{{- $live := lookup "apps/v1" "Deployment" .Release.Namespace (include "recengine.componentName" (dict "ctx" . "component" "index")) -}}
{{- if $live -}}
{{- $annotations := $live.spec.template.metadata.annotations | default dict -}}
{{- $version = get $annotations "recengine.io/embedding-version" | default $version -}}
{{- end -}}
{{- $version -}}
{{- end -}}

{{/*
Labels of a role's pods: the chart's, plus the role's podLabels, which win over commonLabels.
The schema keeps podLabels off the chart's own label keys, so the selector always matches.
(dict "ctx" $ "component" "api" "values" .Values.api)
*/}}
{{- define "recengine.podLabels" -}}
{{- $labels := include "recengine.labels" (dict "ctx" .ctx "component" .component) | fromYaml -}}
{{- toYaml (merge (deepCopy (.values.podLabels | default dict)) $labels) -}}
{{- end -}}

{{/* A container's probes, by kind, from its role's values.probes (a kind set to null: none). */}}
{{- define "recengine.probes" -}}
{{- range $kind := list "startup" "readiness" "liveness" }}
{{- with get $ $kind }}
{{ $kind }}Probe:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Where a role's pods run: priority class, node selector, tolerations, affinity and topology
spread constraints; a constraint without labelSelector spreads the role's own pods.
(dict "ctx" $ "component" "api" "values" .Values.api)
*/}}
{{- define "recengine.podScheduling" -}}
{{- $v := .values -}}
{{- $selector := include "recengine.selectorLabels" (dict "ctx" .ctx "component" .component) | fromYaml -}}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.topologySpreadConstraints }}
topologySpreadConstraints:
{{- range $constraint := . }}
{{- if not (hasKey $constraint "labelSelector") }}
{{- $constraint = merge (dict "labelSelector" (dict "matchLabels" $selector)) $constraint }}
{{- end }}
  - {{ toYaml $constraint | nindent 4 | trim }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
A role's PodDisruptionBudget from its values.pdb: maxUnavailable when set, else minAvailable.
(dict "ctx" $ "component" "api" "pdb" .Values.api.pdb)
*/}}
{{- define "recengine.pdb" -}}
{{- if .pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "recengine.componentName" (dict "ctx" .ctx "component" .component) }}
  labels:
    {{- include "recengine.labels" (dict "ctx" .ctx "component" .component) | nindent 4 }}
spec:
  {{- if not (eq (toString .pdb.maxUnavailable) "") }}
  maxUnavailable: {{ .pdb.maxUnavailable }}
  {{- else }}
  minAvailable: {{ .pdb.minAvailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "recengine.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 6 }}
{{- end }}
{{- end -}}
