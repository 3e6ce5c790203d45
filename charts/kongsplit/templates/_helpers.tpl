{{/* Chart name, overridable; cut to 63 characters (the DNS label limit of resource names). */}}
{{- define "kongsplit.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, cut to 63 characters. When the release name already contains the
chart name it is used alone ("kongsplit", not "kongsplit-kongsplit").
*/}}
{{- define "kongsplit.fullname" -}}
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

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "kongsplit.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels. */}}
{{- define "kongsplit.labels" -}}
helm.sh/chart: {{ include "kongsplit.chart" . }}
{{ include "kongsplit.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kongsplit
{{- end }}

{{/* Selector labels: stable for the life of a release (Deployment selectors are immutable). */}}
{{- define "kongsplit.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kongsplit.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* ServiceAccount to use. */}}
{{- define "kongsplit.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kongsplit.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kongsplit.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "kongsplit.configMapName" -}}
{{- printf "%s-config" (include "kongsplit.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Leader election runs only in standalone mode: each sidecar owns its own Kong node. */}}
{{- define "kongsplit.leaderElection" -}}
{{- if and (eq .Values.mode "standalone") .Values.config.leaderElection.enabled }}true{{ end }}
{{- end }}

{{/* Where the chart mounts things inside the container. */}}
{{- define "kongsplit.configDir" -}}/etc/kongsplit{{- end }}
{{- define "kongsplit.secretsDir" -}}/var/run/secrets/kongsplit{{- end }}

{{/*
The config file: the user's `config:` block plus the keys the chart owns (paths of mounted
Secrets, the watched namespaces, the listen address, the mode's Kong URL and leader election).
*/}}
{{- define "kongsplit.configFile" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $kong := $cfg.kong | default dict }}
{{- $tls := $kong.tls | default dict }}
{{- $secrets := include "kongsplit.secretsDir" . }}
{{- if .Values.kong.tokenSecret.name }}
{{- $_ := set $kong "tokenFile" (printf "%s/token/%s" $secrets .Values.kong.tokenSecret.key) }}
{{- end }}
{{- if .Values.kong.tls.caSecret.name }}
{{- $_ := set $tls "caFile" (printf "%s/ca/%s" $secrets .Values.kong.tls.caSecret.key) }}
{{- end }}
{{- if .Values.kong.tls.clientCertSecret.name }}
{{- $_ := set $tls "certFile" (printf "%s/client/tls.crt" $secrets) }}
{{- $_ := set $tls "keyFile" (printf "%s/client/tls.key" $secrets) }}
{{- end }}
{{- $_ := set $kong "tls" $tls }}
{{- if eq .Values.mode "sidecar" }}
{{- $_ := set $kong "url" "http://localhost:8001" }}
{{- end }}
{{- $_ := set $cfg "kong" $kong }}
{{- $kube := $cfg.kubernetes | default dict }}
{{- if .Values.watchNamespaces }}
{{- $_ := set $kube "namespaces" .Values.watchNamespaces }}
{{- end }}
{{- $_ := set $cfg "kubernetes" $kube }}
{{- $le := $cfg.leaderElection | default dict }}
{{- $_ := set $le "enabled" (eq (include "kongsplit.leaderElection" .) "true") }}
{{- $_ := set $cfg "leaderElection" $le }}
{{- $_ := set $cfg "server" (dict "listen" (printf "0.0.0.0:%d" (int .Values.service.port))) }}
{{- toYaml $cfg }}
{{- end }}

{{/* Volumes the container mounts: the config file, the Secrets, and a small writable /tmp. */}}
{{- define "kongsplit.volumes" -}}
- name: kongsplit-config
  configMap:
    name: {{ include "kongsplit.configMapName" . }}
- name: kongsplit-tmp
  emptyDir:
    medium: Memory
    sizeLimit: 16Mi
{{- if eq .Values.mode "sidecar" }}
{{- /* The Kong chart mounts no API token into its pods (automountServiceAccountToken: false);
  this projected token is mounted into the kongsplit container only, as the Kong chart does for
  its ingress controller, so Kong itself never sees Kubernetes credentials. */}}
- name: kongsplit-sa-token
  projected:
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: 3607
      - configMap:
          name: kube-root-ca.crt
          items:
            - key: ca.crt
              path: ca.crt
      - downwardAPI:
          items:
            - path: namespace
              fieldRef:
                fieldPath: metadata.namespace
{{- end }}
{{- with .Values.kong.tokenSecret.name }}
- name: kongsplit-token
  secret:
    secretName: {{ . }}
    defaultMode: 0444
    items:
      - key: {{ $.Values.kong.tokenSecret.key }}
        path: {{ $.Values.kong.tokenSecret.key }}
{{- end }}
{{- with .Values.kong.tls.caSecret.name }}
- name: kongsplit-ca
  secret:
    secretName: {{ . }}
    defaultMode: 0444
    items:
      - key: {{ $.Values.kong.tls.caSecret.key }}
        path: {{ $.Values.kong.tls.caSecret.key }}
{{- end }}
{{- with .Values.kong.tls.clientCertSecret.name }}
- name: kongsplit-client-cert
  secret:
    secretName: {{ . }}
    defaultMode: 0444
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- end }}

{{/*
The kongsplit container. One definition serves the standalone Deployment and the sidecar
snippet for the Kong chart, so both run with the same args, env, probes and securityContext.
*/}}
{{- define "kongsplit.container" -}}
{{- $secrets := include "kongsplit.secretsDir" . -}}
name: kongsplit
image: {{ include "kongsplit.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
args:
  - run
  - --config
  - {{ include "kongsplit.configDir" . }}/config.yaml
env:
  # Who this replica is (leaderElection.identity defaults to $POD_NAME) and where its Lease
  # lives (the release namespace, the only one where the Role grants Lease access).
  - name: POD_NAME
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
  - name: POD_NAMESPACE
    valueFrom:
      fieldRef:
        fieldPath: metadata.namespace
{{- with .Values.extraEnv }}
{{- toYaml . | nindent 2 }}
{{- end }}
ports:
  - name: http-metrics
    containerPort: {{ .Values.service.port }}
    protocol: TCP
livenessProbe:
  httpGet:
    path: /healthz
    port: http-metrics
  {{- toYaml .Values.livenessProbe | nindent 2 }}
{{- if or (eq .Values.mode "standalone") .Values.sidecar.gateKongReadiness }}
readinessProbe:
  httpGet:
    path: /readyz
    port: http-metrics
  {{- toYaml .Values.readinessProbe | nindent 2 }}
{{- end }}
resources:
  {{- toYaml .Values.resources | nindent 2 }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - name: kongsplit-config
    mountPath: {{ include "kongsplit.configDir" . }}
    readOnly: true
  - name: kongsplit-tmp
    mountPath: /tmp
{{- if eq .Values.mode "sidecar" }}
  - name: kongsplit-sa-token
    mountPath: /var/run/secrets/kubernetes.io/serviceaccount
    readOnly: true
{{- end }}
{{- if .Values.kong.tokenSecret.name }}
  - name: kongsplit-token
    mountPath: {{ $secrets }}/token
    readOnly: true
{{- end }}
{{- if .Values.kong.tls.caSecret.name }}
  - name: kongsplit-ca
    mountPath: {{ $secrets }}/ca
    readOnly: true
{{- end }}
{{- if .Values.kong.tls.clientCertSecret.name }}
  - name: kongsplit-client-cert
    mountPath: {{ $secrets }}/client
    readOnly: true
{{- end }}
{{- end }}

{{/* Base URL of /verify for the analysis template. */}}
{{- define "kongsplit.verifyBaseUrl" -}}
{{- if .Values.analysisTemplate.url }}
{{- .Values.analysisTemplate.url | trimSuffix "/" }}
{{- else }}
{{- printf "http://%s.%s.svc:%d" (include "kongsplit.fullname" .) .Release.Namespace (int .Values.service.port) }}
{{- end }}
{{- end }}
