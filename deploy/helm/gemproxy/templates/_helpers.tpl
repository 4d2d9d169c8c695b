{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "gemproxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. Truncated to 52 characters, not the usual 63:
a StatefulSet's pods carry the label controller-revision-hash=NAME-HASH
(11 more characters), which must stay within the 63 of a label value.
*/}}
{{- define "gemproxy.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of the headless Service that governs the StatefulSet.
*/}}
{{- define "gemproxy.headlessServiceName" -}}
{{- printf "%s-headless" (include "gemproxy.fullname" .) }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "gemproxy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "gemproxy.labels" -}}
helm.sh/chart: {{ include "gemproxy.chart" . }}
{{ include "gemproxy.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | replace "+" "_" | trunc 63 | quote }}
{{- end }}
app.kubernetes.io/component: mirror
app.kubernetes.io/part-of: gemproxy
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels: stable for the life of the release (a StatefulSet's
selector is immutable).
*/}}
{{- define "gemproxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gemproxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount to use.
*/}}
{{- define "gemproxy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gemproxy.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Container image reference: repository@digest, or repository:tag with the
tag defaulting to the chart's appVersion.
*/}}
{{- define "gemproxy.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Fixed paths and port inside the pod. The image also sets
GEMPROXY_DATA_DIR and GEMPROXY_LISTEN to these values, and environment
variables take precedence over config.toml, so they are not configurable.
*/}}
{{- define "gemproxy.dataDir" -}}/var/lib/gemproxy{{- end }}
{{- define "gemproxy.configDir" -}}/etc/gemproxy{{- end }}
{{- define "gemproxy.containerPort" -}}9292{{- end }}

{{/*
terminationGracePeriodSeconds: explicit, or shutdown grace + drain timeout
+ 15 s for closing the cache file. An explicit value not larger than
grace + drain fails the render, since the kubelet would SIGKILL gemproxy
in the middle of a drain.
*/}}
{{- define "gemproxy.terminationGracePeriodSeconds" -}}
{{- $drain := add (int .Values.config.shutdownGraceSeconds) (int .Values.config.drainTimeoutSeconds) }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $drain 15 }}
{{- else if le (int .Values.terminationGracePeriodSeconds) (int $drain) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be larger than config.shutdownGraceSeconds + config.drainTimeoutSeconds (%d)" (int .Values.terminationGracePeriodSeconds) (int $drain)) }}
{{- else }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
Checks config.extraConfig against the keys the chart renders itself: a
repeated key or a [class.*]/[server] table over the chart's dotted keys would make gemproxy exit at
start-up with a TOML error, so the render fails here instead.
*/}}
{{- define "gemproxy.checkExtraConfig" -}}
{{- $extra := .Values.config.extraConfig | default "" }}
{{- if regexMatch "(?m)^[ \\t]*\\[[ \\t]*(class|server|shared_store)[ \\t]*[\\].]" $extra }}
{{- fail "config.extraConfig must not open a [class.*], [server] or [shared_store] table: the chart renders keys in them (use sharedStore.* for the shared store); use config.ttl / config.*Seconds, or dotted keys such as class.info.revalidate_timeout = \"5s\" or server.max_connections = 20000" }}
{{- end }}
{{- $keys := list "listen" "data_dir" "upstream" "log_level" "log_format" "offline" "max_size" "memory_cache" "keep_yanked" "class\\.versions\\.ttl" "class\\.versions\\.negative_ttl" "class\\.info\\.ttl" "class\\.info\\.negative_ttl" "class\\.names\\.ttl" "class\\.names\\.negative_ttl" "class\\.full_index\\.ttl" "class\\.full_index\\.negative_ttl" "class\\.quick_spec\\.negative_ttl" "class\\.gem\\.negative_ttl" "class\\.api\\.ttl" "class\\.api\\.negative_ttl" "server\\.shutdown_grace" "server\\.drain_timeout" "shared_store\\.url" "shared_store\\.endpoint" "shared_store\\.versions_poll" }}
{{- range $keys }}
{{- if regexMatch (printf "(?m)^[ \\t]*[\"']?%s[\"']?[ \\t]*=" .) $extra }}
{{- fail (printf "config.extraConfig must not set %s: the chart renders it from its own values (listen and data_dir are fixed)" (. | replace "\\" "")) }}
{{- end }}
{{- end }}
{{- end }}
