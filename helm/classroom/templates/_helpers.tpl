{{/*
Names. This chart's objects are named after the release (at most 53
characters, helm's own limit), so the release stage can name them too:
  <release>-exchange   the exchange PVC (ReadWriteMany)
  <release>-db         the db sidecar's Secret (key root-password)
  <release>-nbgrader   the nbgrader ConfigMap
*/}}
{{- define "classroom.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "classroom.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "classroom.exchange.pvcName" -}}
{{- printf "%s-exchange" .Release.Name }}
{{- end }}

{{- /* The NFS server's Deployment, Service and disk (PVC) share this name. */}}
{{- define "classroom.exchange.nfsName" -}}
{{- printf "%s-exchange-nfs" .Release.Name }}
{{- end }}

{{- /* PersistentVolumes are cluster-wide: the namespace keeps two releases apart. */}}
{{- define "classroom.exchange.pvName" -}}
{{- printf "%s-%s-exchange" .Release.Namespace .Release.Name | trunc 253 }}
{{- end }}

{{- /* The NFS server's address in the PersistentVolume: the fixed ClusterIP, else the Service's DNS name. */}}
{{- define "classroom.exchange.nfsServer" -}}
{{- $nfs := .Values.classroom.exchange.nfs }}
{{- if $nfs.clusterIP }}
{{- $nfs.clusterIP }}
{{- else }}
{{- printf "%s.%s.svc.%s" (include "classroom.exchange.nfsName" .) .Release.Namespace $nfs.clusterDomain }}
{{- end }}
{{- end }}

{{- /* The Secret the db sidecar's secretKeyRef names (key root-password). */}}
{{- define "classroom.db.secretName" -}}
{{- .Values.classroom.db.existingSecret | default (printf "%s-db" .Release.Name) }}
{{- end }}

{{- define "classroom.nbgrader.configMapName" -}}
{{- printf "%s-nbgrader" .Release.Name }}
{{- end }}

{{- define "classroom.tls.issuerName" -}}
{{- .Values.classroom.tls.issuerName | default (printf "%s-letsencrypt" .Release.Name) }}
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
classroom.validate: the checks that need more than values.schema.json — the
values that one choice makes mandatory, and the agreement between classroom:
and the jupyterhub: values the release stage writes. Renders nothing.
*/}}
{{- define "classroom.validate" -}}
{{- $c := .Values.classroom }}
{{- $jh := .Values.jupyterhub | default dict }}

{{- /* exchange */}}
{{- if eq $c.exchange.storage "storage_class" }}
{{- $_ := required "classroom.exchange.storageClass is required with classroom.exchange.storage: storage_class (an existing ReadWriteMany storage class, e.g. standard-rwx on GKE Filestore)" $c.exchange.storageClass }}
{{- else if eq $c.exchange.storage "nfs" }}
{{- $_ := required "classroom.exchange.nfs.image is required with classroom.exchange.storage: nfs" (dig "nfs" "image" "" $c.exchange) }}
{{- end }}

{{- /* db */}}
{{- if and $c.db.rootPassword $c.db.existingSecret }}
{{- fail (printf "classroom.db: give either rootPassword (the chart makes the Secret %s-db) or existingSecret (%s), not both" .Release.Name $c.db.existingSecret) }}
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
{{- end }}

{{- /* tls, and the jupyterhub values it implies */}}
{{- $https := dig "proxy" "https" dict $jh }}
{{- $httpsOn := dig "enabled" false $https }}
{{- $ingress := dig "ingress" dict $jh }}
{{- if eq $c.tls.mode "ingress" }}
{{- if ne (toString $c.tls.createIssuer) "false" }}
{{- $_ := required "classroom.tls.email is required with classroom.tls.mode: ingress (the Let's Encrypt account's contact address)" $c.tls.email }}
{{- end }}
{{- if not (dig "enabled" false $ingress) }}
{{- fail "classroom.tls.mode: ingress needs jupyterhub.ingress.enabled: true (with hosts, tls and the cert-manager.io/cluster-issuer annotation)" }}
{{- end }}
{{- if $httpsOn }}
{{- fail "classroom.tls.mode: ingress: set jupyterhub.proxy.https.enabled: false (the Ingress terminates TLS, not z2jh's autohttps)" }}
{{- end }}
{{- if not (dig "tls" list $ingress) }}
{{- fail "classroom.tls.mode: ingress needs jupyterhub.ingress.tls: [{hosts: [HOST], secretName: NAME}] (cert-manager stores the certificate in that Secret)" }}
{{- end }}
{{- $issuer := include "classroom.tls.issuerName" . }}
{{- $annotation := dig "annotations" "cert-manager.io/cluster-issuer" "" $ingress }}
{{- if ne $annotation $issuer }}
{{- fail (printf "classroom.tls.mode: ingress needs jupyterhub.ingress.annotations.\"cert-manager.io/cluster-issuer\": %s (the ClusterIssuer this chart makes); found %q" $issuer $annotation) }}
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
