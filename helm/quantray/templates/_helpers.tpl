{{/* Names ------------------------------------------------------------------------------- */}}

{{- define "quantray.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name: the release name alone when it already holds the chart name. */}}
{{- define "quantray.fullname" -}}
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

{{- define "quantray.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "quantray.selectorLabels" -}}
app.kubernetes.io/name: {{ include "quantray.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "quantray.labels" -}}
helm.sh/chart: {{ include "quantray.chart" . }}
{{ include "quantray.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "quantray.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "quantray.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "quantray.image" -}}
{{- printf "%s:%s" .Values.image.repository (default (printf "%s-cuda" .Chart.AppVersion) .Values.image.tag) }}
{{- end }}

{{- define "quantray.rayClusterName" -}}
{{- printf "%s-ray" (include "quantray.fullname" .) | trunc 40 | trimSuffix "-" }}
{{- end }}

{{- define "quantray.rayAuthSecretName" -}}
{{- default (printf "%s-ray-auth" (include "quantray.fullname" .)) .Values.ray.auth.existingSecret }}
{{- end }}

{{- define "quantray.dbSecretName" -}}
{{- default (printf "%s-postgresql" (include "quantray.fullname" .)) .Values.postgresql.auth.existingSecret }}
{{- end }}

{{- define "quantray.mlflowUrl" -}}
{{- printf "http://%s-mlflow:%d" (include "quantray.fullname" .) (int .Values.mlflow.port) }}
{{- end }}

{{/* Ray pods ---------------------------------------------------------------------------- */}}

{{/* Env of every Ray container. Args: root, secretAuth (wire the chart's token Secret). */}}
{{- define "quantray.rayEnv" -}}
{{- $root := .root -}}
- name: HOME
  value: /tmp
- name: RAY_USAGE_STATS_ENABLED
  value: "0"
- name: RAY_TRAIN_ENABLE_STATE_TRACKING
  value: "1"
{{- if $root.Values.mlflow.enabled }}
- name: MLFLOW_TRACKING_URI
  value: {{ include "quantray.mlflowUrl" $root }}
{{- end }}
{{- if .secretAuth }}
{{ include "quantray.rayAuthEnv" $root }}
{{- end }}
{{- end }}

{{- define "quantray.rayAuthEnv" -}}
- name: RAY_AUTH_MODE
  value: token
- name: RAY_AUTH_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "quantray.rayAuthSecretName" . }}
      key: {{ .Values.ray.auth.secretKey }}
{{- end }}

{{/* The Ray container's resources, with the GPUs of a worker added to requests and limits. */}}
{{- define "quantray.rayResources" -}}
{{- $resources := deepCopy .resources -}}
{{- if gt (int .gpus) 0 }}
{{- $_ := set $resources.requests "nvidia.com/gpu" (int .gpus) }}
{{- $_ := set $resources.limits "nvidia.com/gpu" (int .gpus) }}
{{- end }}
{{- toYaml $resources }}
{{- end }}

{{/*
A Ray pod template. Args: root, group (ray.head or ray.workers values), container name,
head (bool), secretAuth (bool), spaceConfigMap (a ConfigMap mounted at /etc/quantray/space, or "").
The head keeps KubeRay's autoscaler ServiceAccount when autoscaling is on (it patches pods).
*/}}
{{- define "quantray.rayPodTemplate" -}}
{{- $root := .root -}}
{{- $group := .group -}}
metadata:
  labels:
    {{- include "quantray.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: ray
spec:
  {{- if not (and .head $root.Values.ray.autoscaling.enabled) }}
  serviceAccountName: {{ include "quantray.serviceAccountName" $root }}
  automountServiceAccountToken: false
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ .container }}
      image: {{ include "quantray.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      {{- if .head }}
      ports:
        - containerPort: 6379
          name: gcs
        - containerPort: 8265
          name: dashboard
        - containerPort: 10001
          name: client
      {{- end }}
      env:
        {{- include "quantray.rayEnv" (dict "root" $root "secretAuth" .secretAuth) | nindent 8 }}
      resources:
        {{- include "quantray.rayResources" (dict "resources" $group.resources "gpus" (ternary 0 $group.gpus .head)) | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.containerSecurityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        - name: dshm
          mountPath: /dev/shm
        {{- if .spaceConfigMap }}
        - name: space
          mountPath: /etc/quantray/space
          readOnly: true
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: {{ $group.tmpSize }}
    - name: dshm
      emptyDir:
        medium: Memory
        sizeLimit: {{ $group.shmSize }}
    {{- if .spaceConfigMap }}
    - name: space
      configMap:
        name: {{ .spaceConfigMap }}
    {{- end }}
  {{- with $group.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $group.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
A RayClusterSpec (the RayCluster's, or the RayJob's ephemeral one).
Args: root, operatorAuth (authOptions), secretAuth (the chart's Secret as env), spaceConfigMap.
*/}}
{{- define "quantray.rayClusterSpec" -}}
{{- $root := .root -}}
{{- $ray := $root.Values.ray -}}
rayVersion: {{ $ray.version | quote }}
{{- if .operatorAuth }}
authOptions:
  mode: token
{{- end }}
enableInTreeAutoscaling: {{ $ray.autoscaling.enabled }}
{{- if $ray.autoscaling.enabled }}
autoscalerOptions:
  upscalingMode: {{ $ray.autoscaling.upscalingMode }}
  idleTimeoutSeconds: {{ $ray.autoscaling.idleTimeoutSeconds }}
  resources:
    {{- toYaml $ray.autoscaling.resources | nindent 4 }}
  securityContext:
    {{- toYaml $root.Values.containerSecurityContext | nindent 4 }}
  {{- if .secretAuth }}
  env:
    {{- include "quantray.rayAuthEnv" $root | nindent 4 }}
  {{- end }}
{{- end }}
headGroupSpec:
  serviceType: ClusterIP
  rayStartParams:
    {{- toYaml $ray.head.rayStartParams | nindent 4 }}
  template:
    {{- include "quantray.rayPodTemplate" (dict "root" $root "group" $ray.head "container" "ray-head" "head" true "secretAuth" .secretAuth "spaceConfigMap" .spaceConfigMap) | nindent 4 }}
workerGroupSpecs:
  - groupName: {{ $ray.workers.groupName }}
    replicas: {{ $ray.workers.replicas }}
    minReplicas: {{ $ray.workers.minReplicas }}
    maxReplicas: {{ $ray.workers.maxReplicas }}
    rayStartParams:
      {{- toYaml $ray.workers.rayStartParams | nindent 6 }}
    template:
      {{- include "quantray.rayPodTemplate" (dict "root" $root "group" $ray.workers "container" "ray-worker" "head" false "secretAuth" .secretAuth "spaceConfigMap" "") | nindent 6 }}
{{- end }}

{{/* Host headers the MLflow server accepts: its Service names, localhost, extras, the Ingress host. */}}
{{- define "quantray.mlflowAllowedHosts" -}}
{{- $svc := printf "%s-mlflow" (include "quantray.fullname" .) -}}
{{- $port := int .Values.mlflow.port -}}
{{- $hosts := list $svc (printf "%s:%d" $svc $port) -}}
{{- range $suffix := list "svc" "svc.cluster.local" -}}
{{- $fqdn := printf "%s.%s.%s" $svc $.Release.Namespace $suffix -}}
{{- $hosts = concat $hosts (list $fqdn (printf "%s:%d" $fqdn $port)) -}}
{{- end -}}
{{- $hosts = concat $hosts (list "localhost:*" "127.0.0.1:*") .Values.mlflow.allowedHosts -}}
{{- if and .Values.ingress.enabled .Values.ingress.hosts.mlflow -}}
{{- $hosts = append $hosts .Values.ingress.hosts.mlflow -}}
{{- end -}}
{{- join "," $hosts -}}
{{- end }}
