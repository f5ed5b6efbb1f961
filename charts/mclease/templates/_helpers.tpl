{{/*
Names are those of config/ (mclease-controller, mclease-candidate, ...), not prefixed with the
release name: one release per cluster, and the ClusterRoles are referenced by name in the docs
(`kubectl create rolebinding ... --clusterrole=mclease-candidate`).
*/}}

{{/* The labels every object of config/ has, plus Helm's. Call with (dict "context" $ "component" "controller"). */}}
{{- define "mclease.labels" -}}
app.kubernetes.io/name: mclease
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: mclease
helm.sh/chart: {{ printf "%s-%s" .context.Chart.Name .context.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .context.Release.Service }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
app.kubernetes.io/version: {{ .context.Chart.AppVersion | quote }}
{{- end }}

{{/* What selects the controller's pods (as in config/: no release label, one release per cluster). */}}
{{- define "mclease.selectorLabels" -}}
app.kubernetes.io/name: mclease
app.kubernetes.io/component: controller
{{- end }}

{{/* clusterName, checked: required and without "/" (the status writes cluster/identity). */}}
{{- define "mclease.clusterName" -}}
{{- $name := required "clusterName is required: set it to this cluster's name, unique among the clusters sharing the store (--set clusterName=eu-west)" .Values.clusterName -}}
{{- if contains "/" $name -}}
{{- fail (printf "clusterName %q has a \"/\": use a name without one (the status names holders cluster/identity)" $name) -}}
{{- end -}}
{{- $name -}}
{{- end }}

{{/*
storage.url, checked: required, and no credential in it (it is stored in a ConfigMap). The
message never quotes the URL, which would quote the password.
*/}}
{{- define "mclease.storageURL" -}}
{{- $url := required "storage.url is required: set the shared store every cluster uses (redis://, rediss://, etcd://, etcds://, gs://; --set storage.url=...); there is no default store" .Values.storage.url -}}
{{- if or (regexMatch "^[A-Za-z][A-Za-z0-9+.-]*://[^/?#@]*:[^/?#@]*@" $url) (regexMatch "(?i)[?&;][^=&;#?]*(password|token|secret)=[^&;#]" $url) -}}
{{- fail "storage.url holds a password (in its user info or a password/token/secret option) and would be stored in a ConfigMap: remove it and set storage.passwordSecret to a Secret that holds it" -}}
{{- end -}}
{{- $url -}}
{{- end }}

{{/* The controller image: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "mclease.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) -}}
{{- end }}
