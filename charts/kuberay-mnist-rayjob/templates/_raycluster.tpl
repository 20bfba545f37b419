{{/* The Ray cluster of the RayJob (spec.rayClusterSpec) and of the RayService (spec.rayClusterConfig):
     one definition, so serving runs with the same image, env, securityContext and volumes as training.
     Arguments: (list $ headImage workerImage servePort mlflowSecret); servePort 0 opens no Serve port;
     mlflowSecret is the MLflow user Secret mounted at ~/.mlflow (the training user's for the RayJob,
     the read-only serving user's for the RayService). */}}
{{- define "rayjob.rayClusterSpec" -}}
{{- $root := index . 0 }}
{{- $image := index . 1 }}
{{- $workerImage := index . 2 }}
{{- $servePort := int (index . 3) }}
{{- $mlflowSecret := index . 4 }}
{{- $gpus := int $root.Values.ray.workers.gpusPerWorker }}
rayVersion: {{ $root.Values.ray.version | quote }}
enableInTreeAutoscaling: false
authOptions:
  mode: {{ include "rayjob.authMode" $root }}
headGroupSpec:
  rayStartParams:
    # The head schedules no training: all Ray Train workers land on worker pods.
    num-cpus: "0"
    dashboard-host: "0.0.0.0"
    # Below the /dev/shm size (ray.shmSizeLimit), checked at render time.
    object-store-memory: {{ include "rayjob.objectStoreBytes" $root | quote }}
  template:
    metadata:
      labels:
        {{- include "rayjob.rayPodLabels" $root | nindent 8 }}
        app.kubernetes.io/component: ray-head
      {{- with $root.Values.ray.head.annotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      {{- with include "rayjob.podScheduling" (list $root.Values.ray.head $root.Values.ray.head.tolerations) | trim }}
      {{- . | nindent 6 }}
      {{- end }}
      {{- with include "rayjob.pullDataInit" (list $root $image) | trim }}
      {{- . | nindent 6 }}
      {{- end }}
      containers:
        - name: ray-head
          image: {{ $image }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          ports:
            - name: gcs-server
              containerPort: 6379
            - name: dashboard
              containerPort: 8265
            - name: client
              containerPort: 10001
            {{- if $servePort }}
            - name: serve
              containerPort: {{ $servePort }}
            {{- end }}
          env:
            {{- include "rayjob.env" $root | trim | nindent 12 }}
            # tagged on each registered model version (mnist_job/tracking/registry.py)
            - name: MNIST_IMAGE
              value: {{ $image | quote }}
          resources:
            {{- toYaml $root.Values.ray.head.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            {{- include "rayjob.rayMounts" $root | nindent 12 }}
            {{- with $root.Values.ray.head.volumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        {{- include "rayjob.rayVolumes" (list $root $mlflowSecret) | nindent 8 }}
        {{- with $root.Values.ray.head.volumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
workerGroupSpecs:
  - groupName: {{ $root.Values.ray.workers.groupName }}
    replicas: {{ int $root.Values.ray.workers.replicas }}
    minReplicas: {{ int $root.Values.ray.workers.replicas }}
    maxReplicas: {{ int $root.Values.ray.workers.replicas }}
    rayStartParams:
      object-store-memory: {{ include "rayjob.objectStoreBytes" $root | quote }}
    template:
      metadata:
        labels:
          {{- include "rayjob.rayPodLabels" $root | nindent 10 }}
          app.kubernetes.io/component: ray-worker
        {{- with $root.Values.ray.workers.annotations }}
        annotations:
          {{- toYaml . | nindent 10 }}
        {{- end }}
      spec:
        automountServiceAccountToken: false
        {{- with $root.Values.imagePullSecrets }}
        imagePullSecrets:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        securityContext:
          {{- toYaml $root.Values.podSecurityContext | nindent 10 }}
        {{- $tolerations := $root.Values.ray.workers.tolerations }}
        {{- if gt $gpus 0 }}
        {{- $tolerations = prepend $tolerations $root.Values.ray.workers.gpuToleration }}
        {{- end }}
        {{- with include "rayjob.podScheduling" (list $root.Values.ray.workers $tolerations) | trim }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- with include "rayjob.pullDataInit" (list $root $workerImage) | trim }}
        {{- . | nindent 8 }}
        {{- end }}
        containers:
          - name: ray-worker
            image: {{ $workerImage }}
            imagePullPolicy: {{ $root.Values.image.pullPolicy }}
            {{- if $servePort }}
            ports:
              - name: serve
                containerPort: {{ $servePort }}
            # KubeRay gives a serving worker a readiness probe that asks Serve's proxy too, but a liveness
            # probe that asks only the raylet: a worker whose proxy hangs would stay, out of the Service, for
            # ever. This one restarts it (docs/kubernetes.md, "What runs where").
            livenessProbe:
              exec:
                command:
                  - bash
                  - -c
                  - wget -T 5 -q -O /dev/null http://localhost:52365/api/healthz && wget -T 5 -q -O- http://localhost:{{ $servePort }}/-/healthz | grep -q success
              initialDelaySeconds: 30
              periodSeconds: 10
              timeoutSeconds: 12
              failureThreshold: {{ int $root.Values.rayService.livenessFailures }}
            {{- end }}
            env:
              {{- include "rayjob.env" $root | trim | nindent 14 }}
              - name: MNIST_IMAGE
                value: {{ $workerImage | quote }}
            {{- $res := deepCopy $root.Values.ray.workers.resources }}
            {{- if gt $gpus 0 }}
            {{- $_ := set $res.limits "nvidia.com/gpu" $gpus }}
            {{- $_ := set $res.requests "nvidia.com/gpu" $gpus }}
            {{- end }}
            resources:
              {{- toYaml $res | nindent 14 }}
            securityContext:
              {{- toYaml $root.Values.containerSecurityContext | nindent 14 }}
            volumeMounts:
              {{- include "rayjob.rayMounts" $root | nindent 14 }}
              {{- with $root.Values.ray.workers.volumeMounts }}
              {{- toYaml . | nindent 14 }}
              {{- end }}
        volumes:
          {{- include "rayjob.rayVolumes" (list $root $mlflowSecret) | nindent 10 }}
          {{- with $root.Values.ray.workers.volumes }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
{{- end -}}
