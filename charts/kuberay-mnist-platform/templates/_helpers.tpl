{{/* Prefix of every object name: fullnameOverride or the release name. */}}
{{- define "platform.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "platform.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kuberay-mnist
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "platform.labels" -}}
{{ include "platform.commonLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of one component: include "platform.selectorLabels" (list . "minio") */}}
{{- define "platform.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ index . 1 }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
{{- end -}}

{{- define "platform.componentLabels" -}}
{{- $root := index . 0 -}}
{{ include "platform.commonLabels" $root }}
{{ include "platform.selectorLabels" . }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "platform.minioName" -}}{{ include "platform.fullname" . }}-minio{{- end -}}
{{- define "platform.mlflowName" -}}{{ include "platform.fullname" . }}-mlflow{{- end -}}
{{- define "platform.endpointsName" -}}{{ include "platform.fullname" . }}-endpoints{{- end -}}

{{/* The S3 credentials Secret: the existing one, or the dev one this chart creates. */}}
{{- define "platform.credentialsSecret" -}}
{{- if .Values.credentials.dev.create -}}
{{ include "platform.fullname" . }}-dev-s3-credentials
{{- else -}}
{{- required "credentials.existingSecret is required: create a Secret with keys credentials, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (charts/README.md, Credential files) and set credentials.existingSecret to its name (or, on a throw-away dev cluster only, use values-dev.yaml)" .Values.credentials.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* Non-empty when helm talks to a cluster (`helm install/upgrade`), empty under
     `helm template`, where every lookup returns nothing. The release namespace
     may not exist yet (--create-namespace creates it after rendering): then ask
     for kube-system. Go templates' `or` stops at the first non-empty argument. */}}
{{- define "platform.clusterReachable" -}}
{{- if or (lookup "v1" "ConfigMap" .Release.Namespace "kube-root-ca.crt") (lookup "v1" "Namespace" "" "kube-system") -}}
true
{{- end -}}
{{- end -}}

{{- define "platform.devSecretPlaceholder" -}}
placeholder-rendered-by-helm-template-helm-install-generates-the-password
{{- end -}}

{{/* The dev Secret's password: the one already in the cluster (kept across
     upgrades), else a new random one at install, else (`helm template`, which
     cannot look it up) the placeholder. */}}
{{- define "platform.devSecretKey" -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "platform.credentialsSecret" .) -}}
{{- $kept := "" -}}
{{- if $existing -}}
{{- $kept = index ($existing.data | default dict) "AWS_SECRET_ACCESS_KEY" | default "" | b64dec -}}
{{- end -}}
{{- if and $kept (ne $kept (include "platform.devSecretPlaceholder" .)) -}}
{{ $kept }}
{{- else if include "platform.clusterReachable" . -}}
{{ randAlphaNum 40 }}
{{- else -}}
{{ include "platform.devSecretPlaceholder" . }}
{{- end -}}
{{- end -}}

{{- define "platform.image" -}}
{{- if not .Values.image.repository -}}{{ fail "image.repository must not be empty" }}{{- end -}}
{{- if not .Values.image.tag -}}{{ fail "image.tag must not be empty: pin the project image (e.g. 0.1.0-cpu)" }}{{- end -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{- define "platform.minioImage" -}}
{{- if not .Values.minio.image.tag -}}{{ fail "minio.image.tag must not be empty: pin a RELEASE.* tag" }}{{- end -}}
{{- if eq .Values.minio.image.tag "latest" -}}{{ fail "minio.image.tag must not be latest: pin a RELEASE.* tag" }}{{- end -}}
{{ .Values.minio.image.repository }}:{{ .Values.minio.image.tag }}
{{- end -}}

{{/* The S3 endpoint every client uses: the in-cluster MinIO, or s3.externalEndpoint. */}}
{{- define "platform.s3Endpoint" -}}
{{- if .Values.minio.enabled -}}
http://{{ include "platform.minioName" . }}:{{ .Values.minio.service.apiPort }}
{{- else -}}
{{- required "s3.externalEndpoint is required when minio.enabled=false: the URL of your S3 service, e.g. https://s3.us-east-1.amazonaws.com (see values-production.yaml)" .Values.s3.externalEndpoint -}}
{{- end -}}
{{- end -}}

{{- define "platform.mlflowUri" -}}
http://{{ include "platform.mlflowName" . }}:{{ .Values.mlflow.service.port }}
{{- end -}}

{{/* Fail early on values that would only break at run time. */}}
{{- define "platform.validate" -}}
{{- $_ := include "platform.credentialsSecret" . -}}
{{- $_ := include "platform.image" . -}}
{{- if .Values.minio.enabled -}}
{{- $_ := include "platform.minioImage" . -}}
{{- if .Values.s3.externalEndpoint -}}
{{- fail "s3.externalEndpoint is set but minio.enabled is true: set minio.enabled=false to use the external S3 endpoint (values-production.yaml), or leave s3.externalEndpoint empty for the in-cluster MinIO" -}}
{{- end -}}
{{- else -}}
{{- if not (regexMatch "^https?://[^/]+/?$" (include "platform.s3Endpoint" .)) -}}
{{- fail (printf "s3.externalEndpoint %q must be a URL like https://s3.us-east-1.amazonaws.com (scheme and host, no path)" .Values.s3.externalEndpoint) -}}
{{- end -}}
{{- end -}}
{{- /* On a real install (not `helm template`, where lookup returns nothing) the
       existing Secret must be there: every pod of the platform needs it. */ -}}
{{- if and (not .Values.credentials.dev.create) (include "platform.clusterReachable" .) -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace .Values.credentials.existingSecret -}}
{{- if not $secret -}}
{{- fail (printf "credentials.existingSecret: Secret %q not found in namespace %q; create it with keys credentials, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY first (charts/README.md, \"Credential files\")" .Values.credentials.existingSecret .Release.Namespace) -}}
{{- end -}}
{{- /* Development credentials (values-dev.yaml's Secret, marked by its annotation) never serve the production path. */ -}}
{{- if eq (toString (index ($secret.metadata.annotations | default dict) "kuberay-mnist/development-credentials")) "true" -}}
{{- fail (printf "credentials.existingSecret: Secret %q carries kuberay-mnist/development-credentials=true: it holds the dev profile's throw-away credentials; create a Secret with your real S3 credentials instead" .Values.credentials.existingSecret) -}}
{{- end -}}
{{- include "platform.requireKeys" (list "credentials.existingSecret" $secret (include "platform.rootSecretKeys" .)) -}}
{{- end -}}
{{- if and .Values.credentials.dev.create .Values.credentials.existingSecret -}}
{{- fail "set either credentials.existingSecret or credentials.dev.create, not both" -}}
{{- end -}}
{{- if .Values.credentials.dev.create -}}
{{- if lt (len .Values.credentials.dev.accessKeyId) 3 -}}
{{- fail "credentials.dev.accessKeyId: MinIO needs at least 3 characters" -}}
{{- end -}}
{{- if hasKey .Values.credentials.dev "secretAccessKey" -}}
{{- fail "credentials.dev.secretAccessKey is no longer a value: helm install generates the dev password (and keeps it across upgrades); remove it from your values" -}}
{{- end -}}
{{- end -}}
{{- range $role, $bucket := .Values.buckets -}}
{{- if not (regexMatch "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$" $bucket) -}}
{{- fail (printf "buckets.%s: %q is not a valid S3 bucket name (3-63 lowercase letters, digits, '.', '-')" $role $bucket) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.credentials.workloads.create (not .Values.minio.enabled) -}}
{{- fail "credentials.workloads.create needs the in-cluster MinIO (its users are made with mc admin): with an external S3 set credentials.workloads.create=false and create the Secrets credentials.workloads.mlflowSecret and trainingSecret name (values-production.yaml)" -}}
{{- end -}}
{{- if and (not .Values.credentials.workloads.create) (include "platform.clusterReachable" .) -}}
{{- range $workload := list "mlflow" "training" -}}
{{- $name := include "platform.workloadSecret" (list $ $workload) -}}
{{- $found := lookup "v1" "Secret" $.Release.Namespace $name -}}
{{- if not $found -}}
{{- fail (printf "credentials.workloads.%sSecret: Secret %q not found in namespace %q; create it with key credentials (an AWS shared credentials file: charts/README.md, \"Credential files\") holding the keys of a user that holds the %s policy (ConfigMap %s-s3-policies)" $workload $name $.Release.Namespace $workload (include "platform.fullname" $)) -}}
{{- end -}}
{{- include "platform.requireKeys" (list (printf "credentials.workloads.%sSecret" $workload) $found "credentials") -}}
{{- end -}}
{{- end -}}
{{- if ne (int .Values.mlflow.workers) 1 -}}
{{- fail "mlflow.workers must be 1 with the SQLite backend store" -}}
{{- end -}}
{{- end -}}

{{- define "platform.mlflowAdminSecret" -}}{{ include "platform.fullname" . }}-mlflow-admin{{- end -}}
{{- define "platform.mlflowTrainingSecret" -}}{{ include "platform.fullname" . }}-mlflow-training{{- end -}}
{{- define "platform.mlflowServingSecret" -}}{{ include "platform.fullname" . }}-mlflow-serving{{- end -}}

{{/* A password the chart generates: include "platform.generatedKey" (list . SECRET KEY). The value
     already in the cluster (kept across upgrades), else a new random one at install, else (`helm
     template`, which cannot look it up) the placeholder, which the Secret then names in its
     kuberay-mnist/placeholder-keys annotation. */}}
{{- define "platform.generatedKey" -}}
{{- $root := index . 0 -}}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace (index . 1) -}}
{{- $kept := "" -}}
{{- if $existing -}}
{{- $kept = index ($existing.data | default dict) (index . 2) | default "" | b64dec -}}
{{- end -}}
{{- if and $kept (ne $kept (include "platform.devSecretPlaceholder" $root)) -}}
{{ $kept }}
{{- else if include "platform.clusterReachable" $root -}}
{{ randAlphaNum 40 }}
{{- else -}}
{{ include "platform.devSecretPlaceholder" $root }}
{{- end -}}
{{- end -}}

{{/* A workload's own S3 credentials Secret: include "platform.workloadSecret" (list . "mlflow"|"training"). */}}
{{- define "platform.workloadSecret" -}}
{{- $root := index . 0 -}}
{{- $workload := index . 1 -}}
{{- default (printf "%s-s3-%s" (include "platform.fullname" $root) $workload) (index $root.Values.credentials.workloads (printf "%sSecret" $workload)) -}}
{{- end -}}

{{- define "platform.mcImage" -}}
{{- if or (not .Values.minio.mcImage.tag) (eq (toString .Values.minio.mcImage.tag) "latest") -}}{{ fail "minio.mcImage.tag must be a pinned RELEASE.* tag" }}{{- end -}}
{{ .Values.minio.mcImage.repository }}:{{ .Values.minio.mcImage.tag }}
{{- end -}}
