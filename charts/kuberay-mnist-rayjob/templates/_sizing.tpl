{{/* Sizes that must agree with each other, checked at render time. */}}

{{/* A Kubernetes quantity in bytes: include "rayjob.bytes" (list VALUE "field.name") */}}
{{- define "rayjob.bytes" -}}
{{- $q := toString (index . 0) -}}
{{- $field := index . 1 -}}
{{- if not (regexMatch "^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$" $q) -}}
{{- fail (printf "%s: %q is not a whole-number size (e.g. 512Mi, 2Gi)" $field $q) -}}
{{- end -}}
{{- $units := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 -}}
{{- $n := regexReplaceAll "[A-Za-z]+$" $q "" -}}
{{- $u := regexReplaceAll "^[0-9]+" $q "" -}}
{{- mul (int64 $n) (index $units $u) -}}
{{- end -}}

{{/* Size of the /app/.dvc/tmp emptyDir of every Ray pod. */}}
{{- define "rayjob.dvcTmpSize" -}}64Mi{{- end -}}

{{/* object-store-memory for rayStartParams, in bytes. */}}
{{- define "rayjob.objectStoreBytes" -}}
{{- include "rayjob.bytes" (list .Values.ray.objectStoreMemory "ray.objectStoreMemory") -}}
{{- end -}}

{{- define "rayjob.validateSizing" -}}
{{- $shm := int64 (include "rayjob.bytes" (list .Values.ray.shmSizeLimit "ray.shmSizeLimit")) -}}
{{- $store := int64 (include "rayjob.objectStoreBytes" .) -}}
{{- if ge $store $shm -}}
{{- fail (printf "ray.objectStoreMemory (%s) must be below ray.shmSizeLimit (%s): Ray's object store lives in /dev/shm and falls back to slow disk when it does not fit" (toString .Values.ray.objectStoreMemory) (toString .Values.ray.shmSizeLimit)) -}}
{{- end -}}
{{- /* Disk-backed emptyDirs count against the pod's ephemeral-storage; beyond the
       limit the kubelet evicts the pod. /dev/shm counts against memory instead. */ -}}
{{- $disk := add (include "rayjob.bytes" (list .Values.ray.tmpSizeLimit "ray.tmpSizeLimit")) (include "rayjob.bytes" (list .Values.dataCacheSizeLimit "dataCacheSizeLimit")) (include "rayjob.bytes" (list (include "rayjob.dvcTmpSize" .) "dvc-tmp")) -}}
{{- range $role, $res := dict "ray.head" .Values.ray.head.resources "ray.workers" .Values.ray.workers.resources -}}
{{- $limits := $res.limits | default dict -}}
{{- $eph := index $limits "ephemeral-storage" -}}
{{- if not $eph -}}
{{- fail (printf "%s.resources.limits.ephemeral-storage is required (the pod's emptyDirs need %d Mi)" $role (div $disk 1048576)) -}}
{{- end -}}
{{- if lt (int64 (include "rayjob.bytes" (list $eph (printf "%s.resources.limits.ephemeral-storage" $role)))) (int64 $disk) -}}
{{- fail (printf "%s.resources.limits.ephemeral-storage (%s) is below the pod's emptyDirs: ray.tmpSizeLimit + dataCacheSizeLimit + %s dvc-tmp = %d Mi; raise the limit or shrink the emptyDirs" $role (toString $eph) (include "rayjob.dvcTmpSize" $) (div $disk 1048576)) -}}
{{- end -}}
{{- $mem := index $limits "memory" -}}
{{- if le (int64 (include "rayjob.bytes" (list $mem (printf "%s.resources.limits.memory" $role)))) $shm -}}
{{- fail (printf "%s.resources.limits.memory (%s) must exceed ray.shmSizeLimit (%s): /dev/shm is memory-backed and counts against it" $role (toString $mem) (toString $.Values.ray.shmSizeLimit)) -}}
{{- end -}}
{{- end -}}
{{- $subEph := index (.Values.submitter.resources.limits | default dict) "ephemeral-storage" -}}
{{- if lt (int64 (include "rayjob.bytes" (list (default "0" $subEph) "submitter.resources.limits.ephemeral-storage"))) (int64 (include "rayjob.bytes" (list .Values.submitter.tmpSizeLimit "submitter.tmpSizeLimit"))) -}}
{{- fail (printf "submitter.resources.limits.ephemeral-storage (%v) is below submitter.tmpSizeLimit (%s)" $subEph (toString .Values.submitter.tmpSizeLimit)) -}}
{{- end -}}
{{- end -}}
