{{- /* TEST STAND-IN helpers, after z2jh 4.2.0's _helpers-names.tpl and _helpers.tpl (simplified). */}}

{{- /* Name prefix: "" with the default fullnameOverride "" (so names are hub, proxy-public, ...). */}}
{{- define "jupyterhub.fullname.dash" -}}
{{- if kindIs "string" .Values.fullnameOverride -}}
{{- with .Values.fullnameOverride }}{{ . }}-{{ end -}}
{{- else -}}
{{- $name := .Values.nameOverride | default .Chart.Name -}}
{{- if contains $name .Release.Name }}{{ .Release.Name }}-{{ else }}{{ .Release.Name }}-{{ $name }}-{{ end -}}
{{- end -}}
{{- end }}

{{- define "jupyterhub.hub.fullname" -}}{{ include "jupyterhub.fullname.dash" . }}hub{{- end }}
{{- define "jupyterhub.hub-pvc.fullname" -}}{{ include "jupyterhub.hub.fullname" . }}-db-dir{{- end }}
{{- define "jupyterhub.proxy-public.fullname" -}}{{ include "jupyterhub.fullname.dash" . }}proxy-public{{- end }}
{{- define "jupyterhub.autohttps.fullname" -}}{{ include "jupyterhub.fullname.dash" . }}autohttps{{- end }}
{{- define "jupyterhub.ingress.fullname" -}}{{ include "jupyterhub.fullname.dash" . | trimSuffix "-" | default "jupyterhub" }}{{- end }}

{{- /* Labels, z2jh's legacy set. Call with (dict "root" $ "component" "hub"). */}}
{{- define "jupyterhub.matchLabels" -}}
component: {{ .component }}
app: jupyterhub
release: {{ .root.Release.Name | quote }}
{{- end }}

{{- define "jupyterhub.labels" -}}
{{ include "jupyterhub.matchLabels" . }}
chart: {{ .root.Chart.Name }}-{{ .root.Chart.Version | replace "+" "_" }}
heritage: {{ .root.Release.Service }}
{{- end }}

{{- /* A value if given, else a random token (z2jh also looks it up in the cluster first). */}}
{{- define "jupyterhub.token" -}}
{{- . | default (randAlphaNum 64) -}}
{{- end }}

{{- /*
  jupyterhub.config: what z2jh 4.2.0's jupyterhub_config.py would set, for
  the traits modelled here, as YAML {Class: {trait: value}}. Tokens are left
  out (z2jh reads them from the hub Secret).
*/}}
{{- define "jupyterhub.config" -}}
{{- $v := .Values }}
{{- $su := $v.singleuser }}
{{- $ks := dict }}
{{- /* image: name[:tag] */}}
{{- if $su.image.name }}
{{- $image := $su.image.name }}
{{- if $su.image.tag }}{{ $image = printf "%s:%s" $su.image.name $su.image.tag }}{{ end }}
{{- $_ := set $ks "image" $image }}
{{- end }}
{{- with $su.image.pullPolicy }}{{ $_ := set $ks "image_pull_policy" . }}{{ end }}
{{- if not (kindIs "invalid" $su.startTimeout) }}{{ $_ := set $ks "start_timeout" $su.startTimeout }}{{ end }}
{{- if not (kindIs "invalid" $su.uid) }}{{ $_ := set $ks "uid" $su.uid }}{{ end }}
{{- if not (kindIs "invalid" $su.fsGid) }}{{ $_ := set $ks "fs_gid" $su.fsGid }}{{ end }}
{{- $_ := set $ks "extra_containers" $su.extraContainers }}
{{- if not (kindIs "invalid" $su.cpu.limit) }}{{ $_ := set $ks "cpu_limit" $su.cpu.limit }}{{ end }}
{{- if not (kindIs "invalid" $su.cpu.guarantee) }}{{ $_ := set $ks "cpu_guarantee" $su.cpu.guarantee }}{{ end }}
{{- if not (kindIs "invalid" $su.memory.limit) }}{{ $_ := set $ks "mem_limit" $su.memory.limit }}{{ end }}
{{- if not (kindIs "invalid" $su.memory.guarantee) }}{{ $_ := set $ks "mem_guarantee" $su.memory.guarantee }}{{ end }}
{{- /* home storage first, then storage.extraVolumes / extraVolumeMounts */}}
{{- $volumes := list }}
{{- $mounts := list }}
{{- if eq $su.storage.type "dynamic" }}
{{- $vol := $su.storage.dynamic.volumeNameTemplate }}
{{- $_ := set $ks "storage_pvc_ensure" true }}
{{- with $su.storage.dynamic.storageClass }}{{ $_ := set $ks "storage_class" . }}{{ end }}
{{- $_ := set $ks "storage_access_modes" $su.storage.dynamic.storageAccessModes }}
{{- $_ := set $ks "storage_capacity" $su.storage.capacity }}
{{- $volumes = append $volumes (dict "name" $vol "persistentVolumeClaim" (dict "claimName" "{pvc_name}")) }}
{{- $mounts = append $mounts (dict "mountPath" $su.storage.homeMountPath "name" $vol "subPath" $su.storage.dynamic.subPath) }}
{{- else if eq $su.storage.type "static" }}
{{- $volumes = append $volumes (dict "name" "home" "persistentVolumeClaim" (dict "claimName" $su.storage.static.pvcName)) }}
{{- $mounts = append $mounts (dict "mountPath" $su.storage.homeMountPath "name" "home" "subPath" $su.storage.static.subPath) }}
{{- end }}
{{- $_ := set $ks "volumes" (concat $volumes $su.storage.extraVolumes) }}
{{- $_ := set $ks "volume_mounts" (concat $mounts $su.storage.extraVolumeMounts) }}
{{- $spawner := dict "cmd" $su.cmd }}
{{- /* services and roles: the culler first, then hub.services / hub.loadRoles */}}
{{- $services := list }}
{{- $roles := list }}
{{- if $v.cull.enabled }}
{{- $cmd := list "python3" "-m" "jupyterhub_idle_culler" (printf "--url=http://localhost:8081%shub/api" (trimSuffix "/" $v.hub.baseUrl | printf "%s/")) }}
{{- with $v.cull.timeout }}{{ $cmd = append $cmd (printf "--timeout=%v" .) }}{{ end }}
{{- with $v.cull.every }}{{ $cmd = append $cmd (printf "--cull-every=%v" .) }}{{ end }}
{{- with $v.cull.concurrency }}{{ $cmd = append $cmd (printf "--concurrency=%v" .) }}{{ end }}
{{- $scopes := list "list:users" "read:users:activity" "read:servers" "delete:servers" }}
{{- if $v.cull.users }}{{ $cmd = append $cmd "--cull-users" }}{{ $scopes = append $scopes "admin:users" }}{{ end }}
{{- if not $v.cull.adminUsers }}{{ $cmd = append $cmd "--cull-admin-users=false" }}{{ end }}
{{- if $v.cull.removeNamedServers }}{{ $cmd = append $cmd "--remove-named-servers" }}{{ end }}
{{- with $v.cull.maxAge }}{{ $cmd = append $cmd (printf "--max-age=%v" .) }}{{ end }}
{{- $services = append $services (dict "name" "jupyterhub-idle-culler" "command" $cmd) }}
{{- $roles = append $roles (dict "name" "jupyterhub-idle-culler" "scopes" $scopes "services" (list "jupyterhub-idle-culler")) }}
{{- end }}
{{- range $name, $service := $v.hub.services }}
{{- $s := omit (deepCopy $service) "apiToken" "api_token" }}
{{- if not (hasKey $s "name") }}{{ $_ := set $s "name" $name }}{{ end }}
{{- $services = append $services $s }}
{{- end }}
{{- range $name, $role := $v.hub.loadRoles }}
{{- $r := deepCopy $role }}
{{- if not (hasKey $r "name") }}{{ $_ := set $r "name" $name }}{{ end }}
{{- $roles = append $roles $r }}
{{- end }}
{{- $c := dict "KubeSpawner" $ks "Spawner" $spawner "JupyterHub" (dict "services" $services "load_roles" $roles) }}
{{- /* hub.config last, section by section, trait by trait (c[app].update(cfg)) */}}
{{- range $app, $cfg := $v.hub.config }}
{{- $section := get $c $app | default dict }}
{{- $cfg = deepCopy ($cfg | default dict) }}
{{- if eq $app "JupyterHub" }}{{ $cfg = omit $cfg "proxy_auth_token" "cookie_secret" "services" }}{{ end }}
{{- if eq $app "ConfigurableHTTPProxy" }}{{ $cfg = omit $cfg "auth_token" }}{{ end }}
{{- if eq $app "CryptKeeper" }}{{ $cfg = omit $cfg "keys" }}{{ end }}
{{- range $trait, $value := $cfg }}{{ $_ := set $section $trait $value }}{{ end }}
{{- $_ := set $c $app $section }}
{{- end }}
{{- toYaml $c }}
{{- end }}
