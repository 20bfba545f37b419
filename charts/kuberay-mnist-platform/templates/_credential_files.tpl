{{/* Credentials reach every pod as files of a read-only Secret volume (mode 0440, group
     fsGroup), never as env vars: each client reads them with its own file mechanism
     (AWS_SHARED_CREDENTIALS_FILE for boto3, DVC, pyarrow and the MLflow server's artifact
     store; MINIO_ROOT_*_FILE for MinIO; MLFLOW_AUTH_CONFIG_PATH for MLflow's auth app).
     charts/README.md ("Credential files") documents each Secret's keys. */}}

{{/* Where the S3 credentials file is mounted (AWS_SHARED_CREDENTIALS_FILE points into it). */}}
{{- define "platform.s3CredentialsDir" -}}/etc/kuberay-mnist/s3{{- end -}}

{{/* An AWS shared credentials file (the Secret key `credentials`): include "platform.s3CredentialsIni" (list ID KEY). */}}
{{- define "platform.s3CredentialsIni" -}}
[default]
aws_access_key_id = {{ index . 0 }}
aws_secret_access_key = {{ index . 1 }}
{{- end -}}

{{/* Keys the root Secret (credentials.existingSecret) must hold: `credentials` for the bucket
     job's boto3; with the in-cluster MinIO also the two keys MinIO and `mc` read as files. */}}
{{- define "platform.rootSecretKeys" -}}
credentials{{ if .Values.minio.enabled }},AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY{{ end }}
{{- end -}}

{{/* Fail when a Secret found with lookup lacks a key: include "platform.requireKeys" (list VALUE SECRET "k1,k2"). */}}
{{- define "platform.requireKeys" -}}
{{- $value := index . 0 -}}
{{- $secret := index . 1 -}}
{{- range $key := splitList "," (index . 2) -}}
{{- if not (hasKey ($secret.data | default dict) $key) -}}
{{- fail (printf "%s: Secret %q has no key %q; the pods read their credentials from files of this Secret, e.g. kubectl create secret generic %s --from-file=credentials=./credentials (an AWS shared credentials file with a [default] profile; see charts/README.md, \"Credential files\")" $value $secret.metadata.name $key $secret.metadata.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A read-only Secret volume: include "platform.secretVolume" (list NAME SECRET (dict KEY PATH ...)). */}}
{{- define "platform.secretVolume" -}}
- name: {{ index . 0 }}
  secret:
    secretName: {{ index . 1 }}
    # owner root, group fsGroup (podSecurityContext): readable by the pod's user only
    defaultMode: 0440
    items:
      {{- range $key, $path := index . 2 }}
      - key: {{ $key }}
        path: {{ $path }}
      {{- end }}
{{- end -}}

{{/* env + mount of a workload's S3 credentials file: the volume is "platform.s3CredentialsVolume". */}}
{{- define "platform.s3CredentialsEnv" -}}
- name: AWS_SHARED_CREDENTIALS_FILE
  value: {{ include "platform.s3CredentialsDir" . }}/credentials
{{- end -}}

{{- define "platform.s3CredentialsMount" -}}
- name: s3-credentials
  mountPath: {{ include "platform.s3CredentialsDir" . }}
  readOnly: true
{{- end -}}

{{/* include "platform.s3CredentialsVolume" (list . SECRET) */}}
{{- define "platform.s3CredentialsVolume" -}}
{{- include "platform.secretVolume" (list "s3-credentials" (index . 1) (dict "credentials" "credentials")) -}}
{{- end -}}
