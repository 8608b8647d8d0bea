{{/*
Names. Every object of this chart is named from .Values.classroom.names,
which the build engine writes when it packages the chart (tasks/contract.py,
the one definition shared with the release stage). Like z2jh, the chart
does not put the release name into names: one classroom per namespace.

  include "classroom.objectName" (list $ "exchangeClaim")
*/}}
{{- define "classroom.objectName" -}}
{{- $root := index . 0 }}
{{- $key := index . 1 }}
{{- $names := $root.Values.classroom.names | default dict }}
{{- required (printf "classroom.names.%s is required: the build engine writes classroom.names when it packages the chart (doit chart:package)" $key) (get $names $key) }}
{{- end }}

{{- /* The names of one course's grader: service, user, host, formgradeGroup, nbgraderGroup. */}}
{{- define "classroom.grader" -}}
{{- $root := index . 0 }}
{{- $course := index . 1 }}
{{- $key := index . 2 }}
{{- $graders := dig "graders" dict ($root.Values.classroom.names | default dict) }}
{{- $grader := required (printf "classroom.names.graders.%s is required (written by the build engine for every course)" $course) (get $graders $course) }}
{{- required (printf "classroom.names.graders.%s.%s is required" $course $key) (get $grader $key) }}
{{- end }}

{{- define "classroom.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "classroom.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- /* PersistentVolumes are cluster-wide: the namespace keeps two classrooms apart. */}}
{{- define "classroom.exchange.pvName" -}}
{{- printf "%s-%s" .Release.Namespace (include "classroom.objectName" (list . "exchangeClaim")) | trunc 253 }}
{{- end }}

{{- /* The NFS server's address in the PersistentVolume: the fixed ClusterIP, else the Service's DNS name. */}}
{{- define "classroom.exchange.nfsServer" -}}
{{- $nfs := .Values.classroom.exchange.nfs }}
{{- if $nfs.clusterIP }}
{{- $nfs.clusterIP }}
{{- else }}
{{- printf "%s.%s.svc.%s" (include "classroom.objectName" (list . "exchangeServer")) .Release.Namespace $nfs.clusterDomain }}
{{- end }}
{{- end }}

{{- /* The notebook image (image:notebook): student servers, graders, the exchange's preparation. */}}
{{- define "classroom.notebookImage" -}}
{{- $image := .Values.jupyterhub.singleuser.image }}
{{- printf "%s:%s" $image.name (toString $image.tag) }}
{{- end }}

{{- define "classroom.tls.acmeServerURL" -}}
{{- if eq .Values.classroom.tls.acmeServer "staging" -}}
https://acme-staging-v02.api.letsencrypt.org/directory
{{- else -}}
https://acme-v02.api.letsencrypt.org/directory
{{- end }}
{{- end }}

{{/*
Labels: call with (dict "root" $ "component" "exchange").
*/}}
{{- define "classroom.selectorLabels" -}}
app.kubernetes.io/name: {{ include "classroom.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "classroom.labels" -}}
{{ include "classroom.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: classroom
helm.sh/chart: {{ include "classroom.chart" .root }}
{{- end }}

{{/*
A Python string literal for a value (JSON strings are valid Python strings).
*/}}
{{- define "classroom.py" -}}
{{- toJson (toString .) }}
{{- end }}

{{/*
Least privilege for the chart's own containers (the NFS server excepted).
*/}}
{{- define "classroom.podSecurity" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .gid }}
fsGroup: {{ .gid }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
classroom.validate: the checks that need more than values.schema.json — the
values that one choice makes mandatory, and the agreement between classroom:
and the jupyterhub: values the release stage writes. Renders nothing.
*/}}
{{- define "classroom.validate" -}}
{{- $c := .Values.classroom }}
{{- $jh := .Values.jupyterhub | default dict }}

{{- /* names: written by the build engine */}}
{{- range $key := list "exchangeClaim" "exchangeServer" "dbSecret" "dbPasswordKey" "dbUserPasswordKey" "nbgraderConfigMap" "nbgraderConfigKey" "hubSecret" "hubApiUrl" "exchangeRoot" "nbgraderConfigPath" "homePath" "notebookUid" "usersGid" "graderPort" "graderPodLabel" }}
{{- $_ := include "classroom.objectName" (list $ $key) }}
{{- end }}

{{- /* exchange */}}
{{- if eq $c.exchange.storage "storage_class" }}
{{- $_ := required "classroom.exchange.storageClass is required with classroom.exchange.storage: storage_class (an existing ReadWriteMany storage class, e.g. standard-rwx on GKE Filestore)" $c.exchange.storageClass }}
{{- else if eq $c.exchange.storage "nfs" }}
{{- $_ := required "classroom.exchange.nfs.image is required with classroom.exchange.storage: nfs" (dig "nfs" "image" "" $c.exchange) }}
{{- end }}

{{- /* courses */}}
{{- $seen := dict }}
{{- range $i, $course := $c.courses }}
{{- $name := required (printf "classroom.courses[%d].name is required" $i) $course.name }}
{{- if hasKey $seen $name }}
{{- fail (printf "classroom.courses: the course name %q appears twice" $name) }}
{{- end }}
{{- $_ := set $seen $name true }}
{{- if not $course.instructors }}
{{- fail (printf "classroom.courses[%d] (%s): instructors is required (at least one login name)" $i $name) }}
{{- end }}
{{- range $key := list "service" "user" "host" "formgradeGroup" "nbgraderGroup" }}
{{- $_ := include "classroom.grader" (list $ $name $key) }}
{{- end }}
{{- if not (hasKey (dig "hub" "services" dict $jh) (include "classroom.grader" (list $ $name "service"))) }}
{{- fail (printf "jupyterhub.hub.services.%s is required: the grader of the course %s is a JupyterHub service" (include "classroom.grader" (list $ $name "service")) $name) }}
{{- end }}
{{- end }}

{{- /* tls, and the jupyterhub values it implies */}}
{{- $https := dig "proxy" "https" dict $jh }}
{{- $httpsOn := dig "enabled" false $https }}
{{- $ingress := dig "ingress" dict $jh }}
{{- if eq $c.tls.mode "ingress" }}
{{- if not (dig "enabled" false $ingress) }}
{{- fail "classroom.tls.mode: ingress needs jupyterhub.ingress.enabled: true (with hosts, tls and the cert-manager.io/cluster-issuer annotation)" }}
{{- end }}
{{- if $httpsOn }}
{{- fail "classroom.tls.mode: ingress: set jupyterhub.proxy.https.enabled: false (the Ingress terminates TLS, not z2jh's autohttps)" }}
{{- end }}
{{- if not (dig "tls" list $ingress) }}
{{- fail "classroom.tls.mode: ingress needs jupyterhub.ingress.tls: [{hosts: [HOST], secretName: NAME}] (cert-manager stores the certificate in that Secret)" }}
{{- end }}
{{- if not (dig "annotations" "cert-manager.io/cluster-issuer" "" $ingress) }}
{{- fail "classroom.tls.mode: ingress needs jupyterhub.ingress.annotations.\"cert-manager.io/cluster-issuer\": the ClusterIssuer of cert-manager's release (release:cert-manager makes it)" }}
{{- end }}
{{- $class := dig "ingressClassName" "" $ingress }}
{{- if and $class (ne $class $c.tls.ingressClass) }}
{{- fail (printf "jupyterhub.ingress.ingressClassName (%s) differs from classroom.tls.ingressClass (%s), the class cert-manager's HTTP-01 solver uses" $class $c.tls.ingressClass) }}
{{- end }}
{{- else if eq $c.tls.mode "autohttps" }}
{{- if not $httpsOn }}
{{- fail "classroom.tls.mode: autohttps needs jupyterhub.proxy.https.enabled: true (with type: letsencrypt, hosts and letsencrypt.contactEmail)" }}
{{- end }}
{{- if ne (dig "type" "letsencrypt" $https | default "letsencrypt") "letsencrypt" }}
{{- fail (printf "classroom.tls.mode: autohttps needs jupyterhub.proxy.https.type: letsencrypt; found %q" (dig "type" "" $https)) }}
{{- end }}
{{- if not (dig "hosts" list $https) }}
{{- fail "classroom.tls.mode: autohttps needs jupyterhub.proxy.https.hosts: [HOST] (without hosts z2jh serves no HTTPS)" }}
{{- end }}
{{- $_ := required "classroom.tls.mode: autohttps needs jupyterhub.proxy.https.letsencrypt.contactEmail" (dig "letsencrypt" "contactEmail" "" $https) }}
{{- $want := include "classroom.tls.acmeServerURL" . }}
{{- $have := dig "letsencrypt" "acmeServer" "" $https }}
{{- if ne $have $want }}
{{- fail (printf "classroom.tls.acmeServer: %s means jupyterhub.proxy.https.letsencrypt.acmeServer: %s; found %q" $c.tls.acmeServer $want $have) }}
{{- end }}
{{- else }}
{{- if $httpsOn }}
{{- fail "classroom.tls.mode: none, but jupyterhub.proxy.https.enabled is true: set classroom.tls.mode: autohttps, or disable z2jh's HTTPS" }}
{{- end }}
{{- end }}
{{- end }}
