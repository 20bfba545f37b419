{{/* Lifecycle of the RayJob: deadlines and what is deleted when the job ends.

     KubeRay 1.7 deletion rules (spec.deletionStrategy.deletionRules; feature gate
     RayJobDeletionPolicy, beta and on by default since KubeRay 1.6) free the GPUs
     at once (DeleteWorkers) and keep the head a little longer for its logs
     (DeleteCluster). A rule's condition takes jobStatus SUCCEEDED/FAILED or
     jobDeploymentStatus Failed; "Failed" also covers the deadlines and submitter
     failures, where the Ray job may have no status at all.

     Kueue (a kueue.x-k8s.io/queue-name label in rayJob.labels) creates the RayJob
     suspended and admits it later; KubeRay rejects a suspended RayJob without
     shutdownAfterJobFinishes, and rules mode forbids shutdownAfterJobFinishes. Under
     Kueue the whole cluster is therefore deleted ttlSecondsAfterFinished
     (= lifecycle.deleteClusterAfterSeconds) after the end, workers included. */}}

{{- define "rayjob.kueueQueue" -}}
{{- index (.Values.rayJob.labels | default dict) "kueue.x-k8s.io/queue-name" | default "" -}}
{{- end -}}

{{/* The deletion rules: lifecycle.deletionRules, or the two-stage default. */}}
{{- define "rayjob.deletionRules" -}}
{{- if .Values.lifecycle.deletionRules -}}
{{ toYaml .Values.lifecycle.deletionRules }}
{{- else -}}
{{- $w := int .Values.lifecycle.deleteWorkersAfterSeconds -}}
{{- $c := int .Values.lifecycle.deleteClusterAfterSeconds -}}
- policy: DeleteWorkers
  condition: {jobStatus: SUCCEEDED, ttlSeconds: {{ $w }}}
- policy: DeleteCluster
  condition: {jobStatus: SUCCEEDED, ttlSeconds: {{ $c }}}
- policy: DeleteWorkers
  condition: {jobDeploymentStatus: Failed, ttlSeconds: {{ $w }}}
- policy: DeleteCluster
  condition: {jobDeploymentStatus: Failed, ttlSeconds: {{ $c }}}
{{- end -}}
{{- end -}}

{{/* The lifecycle fields of the RayJob spec. */}}
{{- define "rayjob.lifecycleSpec" -}}
backoffLimit: {{ int .Values.lifecycle.backoffLimit }}
submitterConfig:
  backoffLimit: {{ int .Values.lifecycle.submitterBackoffLimit }}
activeDeadlineSeconds: {{ int .Values.lifecycle.activeDeadlineSeconds }}
# Fails the RayJob when it is not Running this long after it started (GPUs or
# images that never come), instead of holding the head until activeDeadlineSeconds.
preRunningDeadlineSeconds: {{ int .Values.lifecycle.preRunningDeadlineSeconds }}
{{- if include "rayjob.kueueQueue" . }}
# Kueue admits the job (queue {{ include "rayjob.kueueQueue" . }}): created suspended; KubeRay
# requires shutdownAfterJobFinishes for a suspended RayJob, so no deletion rules.
suspend: true
shutdownAfterJobFinishes: true
ttlSecondsAfterFinished: {{ int .Values.lifecycle.deleteClusterAfterSeconds }}
{{- else }}
shutdownAfterJobFinishes: false
deletionStrategy:
  deletionRules:
    {{- include "rayjob.deletionRules" . | nindent 4 }}
{{- end }}
{{- end -}}

{{- define "rayjob.validateLifecycle" -}}
{{- $l := .Values.lifecycle -}}
{{- range $k := list "backoffLimit" "submitterBackoffLimit" "deleteWorkersAfterSeconds" "deleteClusterAfterSeconds" -}}
{{- if lt (int (index $l $k)) 0 -}}
{{- fail (printf "lifecycle.%s must not be negative" $k) -}}
{{- end -}}
{{- end -}}
{{- if le (int $l.preRunningDeadlineSeconds) 0 -}}
{{- fail "lifecycle.preRunningDeadlineSeconds must be a positive number of seconds (KubeRay fails the RayJob when it is not Running by then)" -}}
{{- end -}}
{{- if ge (int $l.preRunningDeadlineSeconds) (int $l.activeDeadlineSeconds) -}}
{{- fail (printf "lifecycle.preRunningDeadlineSeconds (%d) must be shorter than lifecycle.activeDeadlineSeconds (%d)" (int $l.preRunningDeadlineSeconds) (int $l.activeDeadlineSeconds)) -}}
{{- end -}}
{{- if gt (int $l.deleteWorkersAfterSeconds) (int $l.deleteClusterAfterSeconds) -}}
{{- fail (printf "lifecycle.deleteWorkersAfterSeconds (%d) must not exceed lifecycle.deleteClusterAfterSeconds (%d): KubeRay requires DeleteWorkers no later than DeleteCluster" (int $l.deleteWorkersAfterSeconds) (int $l.deleteClusterAfterSeconds)) -}}
{{- end -}}
{{- if and (include "rayjob.kueueQueue" .) $l.deletionRules -}}
{{- fail "lifecycle.deletionRules cannot be used with a Kueue queue (rayJob.labels kueue.x-k8s.io/queue-name): KubeRay requires shutdownAfterJobFinishes for a suspended RayJob, and the two are mutually exclusive" -}}
{{- end -}}
{{- range $i, $r := $l.deletionRules -}}
{{- if not (has (toString $r.policy) (list "DeleteWorkers" "DeleteCluster" "DeleteSelf" "DeleteNone")) -}}
{{- fail (printf "lifecycle.deletionRules[%d].policy %q must be one of DeleteWorkers, DeleteCluster, DeleteSelf, DeleteNone" $i (toString $r.policy)) -}}
{{- end -}}
{{- $c := $r.condition | default dict -}}
{{- if eq (len (without (keys $c) "ttlSeconds")) 1 | not -}}
{{- fail (printf "lifecycle.deletionRules[%d].condition needs exactly one of jobStatus (SUCCEEDED, FAILED) or jobDeploymentStatus (Failed)" $i) -}}
{{- end -}}
{{- end -}}
{{- end -}}
