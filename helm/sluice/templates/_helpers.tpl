{{/* Names, labels and the values every node shares. */}}

{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The StatefulSet's name, so pods are <fullname>-<ordinal>; kept short enough for pod DNS labels. */}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sluice.headless" -}}
{{- printf "%s-headless" (include "sluice.fullname" .) -}}
{{- end -}}

{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ include "sluice.chart" . }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sluice.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The DNS name of pod <ordinal> in the headless Service. */}}
{{- define "sluice.podHost" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%d.%s.%s.svc.%s" (include "sluice.fullname" $root) (index . 1) (include "sluice.headless" $root) $root.Release.Namespace $root.Values.clusterDomain -}}
{{- end -}}

{{/* The client Service's address, for the hook Jobs and the test Pod. */}}
{{- define "sluice.clientAddress" -}}
{{- printf "%s.%s.svc.%s:%d" (include "sluice.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.grpc.port) -}}
{{- end -}}

{{/* Seed peers: pods 0 .. seeds-1, whatever replicaCount is, so scaling changes no pod spec. */}}
{{- define "sluice.seeds" -}}
{{- $seeds := list -}}
{{- range $i := until (int .Values.seeds) -}}
{{- $seeds = append $seeds (printf "%s:%d" (include "sluice.podHost" (list $ $i)) (int $.Values.grpc.port)) -}}
{{- end -}}
{{- toJson $seeds -}}
{{- end -}}

{{/*
The most nodes a voluntary disruption may take down: a Raft majority of n survives at most
floor((n-1)/2) down. A larger maxUnavailable would let an eviction break the quorum.
*/}}
{{- define "sluice.maxUnavailable" -}}
{{- $n := int .Values.replicaCount -}}
{{- $safe := div (sub $n 1) 2 -}}
{{- $asked := .Values.podDisruptionBudget.maxUnavailable -}}
{{- if kindIs "invalid" $asked -}}
{{- $safe -}}
{{- else if gt (int $asked) $safe -}}
{{- fail (printf "podDisruptionBudget.maxUnavailable=%d is unsafe for replicaCount=%d: a Raft majority survives at most floor((%d-1)/2)=%d nodes down" (int $asked) $n $n $safe) -}}
{{- else -}}
{{- int $asked -}}
{{- end -}}
{{- end -}}

{{/* Checks across values that the schema cannot express. */}}
{{- define "sluice.validate" -}}
{{- if ge (int .Values.drain.timeoutSeconds) (int .Values.terminationGracePeriodSeconds) -}}
{{- fail (printf "drain.timeoutSeconds=%d must be shorter than terminationGracePeriodSeconds=%d: the drain runs inside the grace period" (int .Values.drain.timeoutSeconds) (int .Values.terminationGracePeriodSeconds)) -}}
{{- end -}}
{{- if .Values.kafka.sasl.existingSecret -}}
{{- $p := .Values.kafka.properties -}}
{{- if not (and (hasKey $p "security_protocol") (hasKey $p "sasl_mechanisms")) -}}
{{- fail "kafka.sasl.existingSecret is set: also set kafka.properties.security_protocol (SASL_SSL or SASL_PLAINTEXT) and kafka.properties.sasl_mechanisms (e.g. SCRAM-SHA-512 or PLAIN)" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled (the port it scrapes)" -}}
{{- end -}}
{{- end -}}

{{/* Pod settings shared by the hook Jobs and the test Pod. */}}
{{- define "sluice.hookPodSpec" -}}
restartPolicy: Never
serviceAccountName: {{ include "sluice.serviceAccountName" . }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
