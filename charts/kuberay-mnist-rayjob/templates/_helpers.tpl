{{/* RayJob name: nameOverride or the release name. KubeRay limits RayJob names to
     47 characters (the RayCluster gets a suffix) and needs a DNS-1035 label. */}}
{{- define "rayjob.name" -}}
{{- $n := default .Release.Name .Values.nameOverride -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]{0,45}[a-z0-9])?$" $n) -}}
{{- fail (printf "RayJob name %q must be a DNS-1035 label of at most 47 characters (set nameOverride)" $n) -}}
{{- end -}}
{{- $n -}}
{{- end -}}

{{- define "rayjob.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/name: kuberay-mnist-train
app.kubernetes.io/part-of: kuberay-mnist
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* The label every pod of this RayJob carries (head, workers, submitter): its
     NetworkPolicies select by it and app.kubernetes.io/component, never by the
     RayCluster name KubeRay generates. */}}
{{- define "rayjob.podSelectorLabels" -}}
kuberay-mnist/rayjob: {{ include "rayjob.name" . }}
{{- end -}}

{{/* Labels of the Ray head and worker pods: they may reach MinIO and MLflow. */}}
{{- define "rayjob.rayPodLabels" -}}
{{ include "rayjob.labels" . }}
{{ include "rayjob.podSelectorLabels" . }}
{{ .Values.platform.clientLabel.key }}: {{ .Values.platform.clientLabel.value | toString | quote }}
{{- end -}}

{{/* Image of the head, the submitter and the head's init container: the CPU variant. */}}
{{- define "rayjob.image" -}}
{{- if not .Values.image.repository -}}{{ fail "image.repository must not be empty" }}{{- end -}}
{{- if not .Values.image.tag -}}{{ fail "image.tag must not be empty: pin the image that holds this code (e.g. 0.1.0-cpu)" }}{{- end -}}
{{- if eq (toString .Values.image.tag) "latest" -}}{{ fail "image.tag must not be latest: pin the image that holds this code" }}{{- end -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{/* Image of the worker pods (the GPU variant in the GPU profile); empty parts fall back to image.*. */}}
{{- define "rayjob.workerImage" -}}
{{- $w := .Values.ray.workers.image | default dict -}}
{{- $repo := default .Values.image.repository $w.repository -}}
{{- $tag := toString (default .Values.image.tag $w.tag) -}}
{{- if not $repo -}}{{ fail "ray.workers.image.repository (or image.repository) must not be empty" }}{{- end -}}
{{- if eq $tag "latest" -}}{{ fail "ray.workers.image.tag must not be latest: pin the image that holds this code" }}{{- end -}}
{{ $repo }}:{{ $tag }}
{{- end -}}

{{/* Ray's authentication mode: token only. Without it anyone who reaches the
     dashboard (8265) or the client port (10001) can run code in the cluster. */}}
{{- define "rayjob.authMode" -}}
{{- if ne (toString .Values.ray.authMode) "token" -}}
{{- fail (printf "ray.authMode must be token (got %q): without token authentication anyone who reaches the Ray head can submit jobs, i.e. run code with the job's S3 credentials" (toString .Values.ray.authMode)) -}}
{{- end -}}
token
{{- end -}}

{{- define "rayjob.endpointsConfigMap" -}}
{{- required "platform.endpointsConfigMap is required: the platform's endpoints ConfigMap, e.g. mnist-platform-endpoints" .Values.platform.endpointsConfigMap -}}
{{- end -}}

{{/* The env of the Ray containers (head, workers, the pull init container): the platform's
     endpoints, where the S3 credentials file is, then what every container of the job gets. */}}
{{- define "rayjob.env" -}}
{{- $cm := include "rayjob.endpointsConfigMap" . -}}
{{- range list "MLFLOW_TRACKING_URI" "AWS_ENDPOINT_URL" "AWS_DEFAULT_REGION" "MNIST_DVC_REMOTE_URL" }}
- name: {{ . }}
  valueFrom:
    configMapKeyRef:
      name: {{ $cm }}
      key: {{ . }}
{{- end }}
{{- /* S3 and MLflow credentials: files of Secret volumes (templates/_credentials.tpl) */}}
- name: AWS_SHARED_CREDENTIALS_FILE
  value: {{ include "rayjob.s3CredentialsDir" . }}/credentials
{{ include "rayjob.processEnv" . }}
{{- end -}}

{{/* The env of every container, the submitter's included: it only talks to the Ray dashboard,
     so it gets no S3 credentials and no endpoints. */}}
{{- define "rayjob.processEnv" -}}
- name: MNIST_DATA_CACHE
  value: /data-cache
- name: MNIST_PROJECT_DIR
  value: /app
- name: RAY_TRAIN_V2_ENABLED
  value: "1"
- name: RAY_USAGE_STATS_ENABLED
  value: "0"
- name: MLFLOW_DISABLE_TELEMETRY
  value: "true"
- name: DVC_NO_ANALYTICS
  value: "1"
# Read-only root filesystem: everything that writes under $HOME goes to /tmp.
- name: HOME
  value: {{ include "rayjob.home" . }}
- name: XDG_CACHE_HOME
  value: /tmp/.cache
- name: XDG_CONFIG_HOME
  value: /tmp/.config
- name: MPLCONFIGDIR
  value: /tmp/.config/matplotlib
# DVC 3 opens a site cache under /var/tmp/dvc on every command (read-only here): keep it in /tmp.
- name: DVC_SITE_CACHE_DIR
  value: /tmp/dvc-site
{{- with .Values.job.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Writable mounts of a Ray container (head/worker). */}}
{{- define "rayjob.rayMounts" -}}
- name: tmp
  mountPath: /tmp
- name: dshm
  mountPath: /dev/shm
- name: data-cache
  mountPath: /data-cache
- name: dvc-tmp
  mountPath: /app/.dvc/tmp
{{ include "rayjob.credentialMounts" . }}
{{- end -}}

{{/* Volumes of a Ray pod: include "rayjob.rayVolumes" (list $ MLFLOW_SECRET). */}}
{{- define "rayjob.rayVolumes" -}}
{{- $mlflowSecret := index . 1 -}}
{{- with index . 0 -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.ray.tmpSizeLimit }}
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.ray.shmSizeLimit }}
- name: data-cache
  emptyDir:
    sizeLimit: {{ .Values.dataCacheSizeLimit }}
- name: dvc-tmp
  emptyDir:
    sizeLimit: {{ include "rayjob.dvcTmpSize" . }}
{{ include "rayjob.credentialVolumes" (list . $mlflowSecret) }}
{{- end -}}
{{- end -}}

{{/* The optional initContainer that pulls the dataset into /data-cache:
     include "rayjob.pullDataInit" (list . IMAGE), IMAGE being the pod's own image. */}}
{{- define "rayjob.pullDataInit" -}}
{{- $image := index . 1 -}}
{{- with index . 0 -}}
{{- if .Values.job.pullDataInitContainer }}
initContainers:
  - name: pull-data
    image: {{ $image }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    command: [mnist-job, pull-data]
    env:
      {{- include "rayjob.env" . | trim | nindent 6 }}
    resources:
      requests: {cpu: 250m, memory: 512Mi, ephemeral-storage: 64Mi}
      limits: {cpu: "1", memory: 1Gi, ephemeral-storage: 256Mi}
    securityContext:
      {{- toYaml .Values.containerSecurityContext | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      - name: data-cache
        mountPath: /data-cache
      - name: dvc-tmp
        mountPath: /app/.dvc/tmp
      {{- include "rayjob.s3CredentialsMount" . | nindent 6 }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* Ray Train workers the worker group can host. */}}
{{- define "rayjob.capacity" -}}
{{- if .Values.job.useGpu -}}
{{- mul (int .Values.ray.workers.replicas) (int .Values.ray.workers.gpusPerWorker) -}}
{{- else -}}
{{- int .Values.ray.workers.replicas -}}
{{- end -}}
{{- end -}}

{{/* `mnist-job train ...`: the job's entrypoint (run by `ray job submit` on the head). */}}
{{- define "rayjob.entrypoint" -}}
{{- $command := .Values.job.command | default "train" -}}
{{- if not (has $command (list "train" "tune")) -}}
{{- fail (printf "job.command: %q is neither train nor tune" $command) -}}
{{- end -}}
{{- $args := list "mnist-job" $command "--params" .Values.job.paramsFile -}}
{{- $sets := dict -}}
{{- $_ := set $sets "train.num_workers" (toString (int .Values.job.numWorkers)) -}}
{{- $_ := set $sets "train.use_gpu" (ternary "true" "false" (eq (toString .Values.job.useGpu) "true")) -}}
{{- $storage := printf "s3://%s/%s" .Values.platform.checkpointsBucket (trimAll "/" .Values.job.storagePrefix) -}}
{{- $_ := set $sets "train.output_dir" .Values.job.outputDir -}}
{{- $order := list "train.num_workers" "train.use_gpu" -}}
{{- if eq $command "tune" -}}
{{- /* the study is named after the RayJob: a retry (or the manifest applied again) resumes it */ -}}
{{- $_ := set $sets "tune.storage_path" $storage -}}
{{- $_ := set $sets "tune.study_name" (include "rayjob.name" .) -}}
{{- $order = concat $order (list "tune.storage_path" "tune.study_name" "train.output_dir") -}}
{{- else -}}
{{- $_ := set $sets "train.storage_path" $storage -}}
{{- $_ := set $sets "train.run_name" (include "rayjob.name" .) -}}
{{- /* the same manifest applied again after a finished run trains anew (<name>-<UTC time>); a retry resumes */ -}}
{{- $_ := set $sets "train.if_finished" "new-run" -}}
{{- $order = concat $order (list "train.storage_path" "train.run_name" "train.output_dir" "train.if_finished") -}}
{{- end -}}
{{- range $k := $order -}}
{{- $args = append $args "--set" -}}
{{- $args = append $args (printf "%s=%s" $k (index $sets $k)) -}}
{{- end -}}
{{- range $k := keys .Values.job.set | sortAlpha -}}
{{- if hasKey $sets $k -}}
{{- fail (printf "job.set.%s: set it through its own value (job.numWorkers, job.useGpu, job.storagePrefix, nameOverride, job.outputDir; train.if_finished is always new-run; a study is named after the RayJob)" $k) -}}
{{- end -}}
{{- $args = append $args "--set" -}}
{{- $args = append $args (printf "%s=%v" $k (index $.Values.job.set $k)) -}}
{{- end -}}
{{- range .Values.job.extraArgs -}}
{{- $args = append $args (toString .) -}}
{{- end -}}
{{- $quoted := list -}}
{{- range $args -}}
{{- if regexMatch "^[A-Za-z0-9_./:=,@+-]+$" . -}}
{{- $quoted = append $quoted . -}}
{{- else -}}
{{- $quoted = append $quoted (squote .) -}}
{{- end -}}
{{- end -}}
{{- join " " $quoted -}}
{{- end -}}

{{- define "rayjob.validate" -}}
{{- $_ := include "rayjob.image" . -}}
{{- $_ := include "rayjob.credentialsSecret" . -}}
{{- $_ := include "rayjob.endpointsConfigMap" . -}}
{{- $_ := include "rayjob.mlflowCredentialsSecret" . -}}
{{- $_ := include "rayjob.name" . -}}
{{- $_ := include "rayjob.authMode" . -}}
{{- include "rayjob.checkCredentialsSecret" . -}}
{{- include "rayjob.checkCredentialKeys" . -}}
{{- range .Values.job.extraEnv -}}
{{- if has .name (list "RAY_AUTH_MODE" "RAY_AUTH_TOKEN") -}}
{{- fail (printf "job.extraEnv: %s is set by KubeRay from ray.authMode (token); setting it here would override or disable Ray's token authentication" .name) -}}
{{- end -}}
{{- end -}}
{{- if not (kindIs "bool" .Values.job.useGpu) -}}
{{- fail (printf "job.useGpu must be true or false (got %v)" .Values.job.useGpu) -}}
{{- end -}}
{{- if lt (int .Values.job.numWorkers) 1 -}}
{{- fail "job.numWorkers must be at least 1" -}}
{{- end -}}
{{- if lt (int .Values.ray.workers.replicas) 1 -}}
{{- fail "ray.workers.replicas must be at least 1 (the head does not train: num-cpus 0)" -}}
{{- end -}}
{{- if lt (int .Values.ray.workers.gpusPerWorker) 0 -}}
{{- fail "ray.workers.gpusPerWorker must not be negative" -}}
{{- end -}}
{{- if and .Values.job.useGpu (eq (int .Values.ray.workers.gpusPerWorker) 0) -}}
{{- fail "job.useGpu=true but ray.workers.gpusPerWorker is 0: give each worker at least 1 GPU, or use values-cpu-kind.yaml / job.useGpu=false" -}}
{{- end -}}
{{- $cap := int (include "rayjob.capacity" .) -}}
{{- if gt (int .Values.job.numWorkers) $cap -}}
{{- if .Values.job.useGpu -}}
{{- fail (printf "job.numWorkers=%d Ray Train workers do not fit ray.workers.replicas (%d) x ray.workers.gpusPerWorker (%d) = %d GPUs" (int .Values.job.numWorkers) (int .Values.ray.workers.replicas) (int .Values.ray.workers.gpusPerWorker) $cap) -}}
{{- else -}}
{{- fail (printf "job.numWorkers=%d Ray Train workers exceed ray.workers.replicas=%d (one Ray Train worker per worker pod in the CPU profile)" (int .Values.job.numWorkers) (int .Values.ray.workers.replicas)) -}}
{{- end -}}
{{- end -}}
{{- if not .Values.platform.checkpointsBucket -}}
{{- fail "platform.checkpointsBucket must not be empty" -}}
{{- end -}}
{{- if le (int .Values.lifecycle.activeDeadlineSeconds) 0 -}}
{{- fail "lifecycle.activeDeadlineSeconds must be a positive number of seconds" -}}
{{- end -}}
{{- include "rayjob.validateLifecycle" . -}}
{{- include "rayjob.validateSizing" . -}}
{{- end -}}

{{/* platform.allowDevelopmentCredentials as an annotation of the RayJob or RayService:
scripts/deploy-common.sh reads it before accepting a Secret marked as development credentials. */}}
{{- define "rayjob.developmentCredentialsAnnotation" -}}
{{- if .Values.platform.allowDevelopmentCredentials -}}
kuberay-mnist/development-credentials-allowed: "true"
{{- end -}}
{{- end -}}

{{/* The scheduling fields of one pod spec from a block of values (ray.head, ray.workers, submitter):
     nodeSelector, tolerations (given: the workers' include the GPU toleration), affinity, priorityClassName.
     Arguments: (list block tolerations). Empty when the block sets none. */}}
{{- define "rayjob.podScheduling" -}}
{{- $block := index . 0 }}
{{- with $block.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with index . 1 }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $block.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $block.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- end -}}
