{{/* The job's credentials: files of read-only Secret volumes (mode 0440, group fsGroup), never env
     vars. S3: an AWS shared credentials file (AWS_SHARED_CREDENTIALS_FILE; boto3, DVC's s3fs and
     pyarrow's S3 filesystem read it). MLflow: ~/.mlflow/credentials, which MLflow's client reads
     (HOME is /tmp/home, an emptyDir of its own, so the Secret can be mounted inside it). */}}

{{- define "rayjob.credentialsSecret" -}}
{{- required "platform.credentialsSecret is required: the name of the platform's S3 credentials Secret (key credentials, an AWS shared credentials file), e.g. mnist-platform-s3-training" .Values.platform.credentialsSecret -}}
{{- end -}}

{{- define "rayjob.mlflowCredentialsSecret" -}}
{{- required "platform.mlflowCredentialsSecret is required: the platform's MLflow training user Secret (key credentials, MLflow's [mlflow] file), e.g. mnist-platform-mlflow-training" .Values.platform.mlflowCredentialsSecret -}}
{{- end -}}

{{- define "rayjob.mlflowServingCredentialsSecret" -}}
{{- required "platform.mlflowServingCredentialsSecret is required with rayService.enabled: the platform's read-only MLflow serving user Secret (key credentials, MLflow's [mlflow] file), e.g. mnist-platform-mlflow-serving" .Values.platform.mlflowServingCredentialsSecret -}}
{{- end -}}

{{/* On a real install (lookup answers; `helm template` cannot look anything up),
     refuse a credentials Secret the platform chart marked as development
     credentials unless this profile allows them (values-cpu-kind.yaml).
     scripts/deploy-rayjob.sh, which renders with `helm template`, checks the
     same with kubectl. */}}
{{- define "rayjob.checkCredentialsSecret" -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "rayjob.credentialsSecret" .) -}}
{{- if and $secret (not .Values.platform.allowDevelopmentCredentials) -}}
{{- if eq (toString (index ($secret.metadata.annotations | default dict) "kuberay-mnist/development-credentials")) "true" -}}
{{- fail (printf "platform.credentialsSecret: Secret %q holds development credentials (annotation kuberay-mnist/development-credentials=true, made by the platform chart's values-dev.yaml); this profile needs the platform's real credentials Secret" (include "rayjob.credentialsSecret" .)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The Secrets the pods read must hold the keys they mount (where lookup sees them): the RayJob's
     pods the training user's MLflow Secret, the RayService's the serving user's. */}}
{{- define "rayjob.checkCredentialKeys" -}}
{{- $secrets := dict "platform.credentialsSecret" (include "rayjob.credentialsSecret" .) -}}
{{- if .Values.rayService.enabled -}}
{{- $_ := set $secrets "platform.mlflowServingCredentialsSecret" (include "rayjob.mlflowServingCredentialsSecret" .) -}}
{{- else -}}
{{- $_ := set $secrets "platform.mlflowCredentialsSecret" (include "rayjob.mlflowCredentialsSecret" .) -}}
{{- end -}}
{{- range $value, $name := $secrets -}}
{{- $secret := lookup "v1" "Secret" $.Release.Namespace $name -}}
{{- if and $secret (not (hasKey ($secret.data | default dict) "credentials")) -}}
{{- fail (printf "%s: Secret %q has no key \"credentials\": the Ray pods read their credentials from that file (S3: an AWS shared credentials file; MLflow: a [mlflow] file with mlflow_tracking_username and mlflow_tracking_password). The platform chart makes both; see its README, Credential files" $value $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "rayjob.s3CredentialsDir" -}}/etc/kuberay-mnist/s3{{- end -}}
{{- define "rayjob.home" -}}/tmp/home{{- end -}}

{{- define "rayjob.s3CredentialsMount" -}}
- name: s3-credentials
  mountPath: {{ include "rayjob.s3CredentialsDir" . }}
  readOnly: true
{{- end -}}

{{/* Mounts of the head and worker containers: the S3 file, HOME and MLflow's file inside it. */}}
{{- define "rayjob.credentialMounts" -}}
{{ include "rayjob.s3CredentialsMount" . }}
- name: home
  mountPath: {{ include "rayjob.home" . }}
- name: mlflow-credentials
  mountPath: {{ include "rayjob.home" . }}/.mlflow
  readOnly: true
{{- end -}}

{{/* include "rayjob.credentialVolumes" (list $ MLFLOW_SECRET): the MLflow user is the pod's role's. */}}
{{- define "rayjob.credentialVolumes" -}}
- name: home
  emptyDir:
    sizeLimit: 16Mi
{{- range $volume, $secret := dict "s3-credentials" (include "rayjob.credentialsSecret" (index . 0)) "mlflow-credentials" (index . 1) }}
- name: {{ $volume }}
  secret:
    secretName: {{ $secret }}
    # owner root, group fsGroup (podSecurityContext): readable by the pod's user only
    defaultMode: 0440
    items:
      - key: credentials
        path: credentials
{{- end }}
{{- end -}}
