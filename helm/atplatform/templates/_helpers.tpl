{{/* Chart name. */}}
{{- define "atplatform.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every resource name: "<release>-<chart>", or the release alone when it holds
the chart name. Kept to 50 characters so suffixes like "-redis-headless" fit in 63. */}}
{{- define "atplatform.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "atplatform.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every resource. */}}
{{- define "atplatform.labels" -}}
helm.sh/chart: {{ include "atplatform.chart" . }}
{{ include "atplatform.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: atplatform
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "atplatform.selectorLabels" -}}
app.kubernetes.io/name: {{ include "atplatform.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one component: (dict "ctx" $ "component" "server"). */}}
{{- define "atplatform.componentLabels" -}}
{{ include "atplatform.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "atplatform.componentSelector" -}}
{{ include "atplatform.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "atplatform.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "atplatform.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* An image reference from {repository, tag, digest}: repository@digest when a digest is
given (pinned: what runs cannot change under the same tag), else repository:tag. Takes
(dict "image" .Values.image "tag" <default tag>). */}}
{{- define "atplatform.imageRef" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .tag .image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{- define "atplatform.image" -}}
{{- include "atplatform.imageRef" (dict "image" .Values.image "tag" .Chart.AppVersion) -}}
{{- end -}}

{{/* The Secret holding the cluster CA, and the keys of its certificate and private key. */}}
{{- define "atplatform.caSecretName" -}}
{{- if .Values.certManager.enabled -}}
{{- printf "%s-ca" (include "atplatform.fullname" .) -}}
{{- else if .Values.tls.existingSecret -}}
{{- .Values.tls.existingSecret -}}
{{- else -}}
{{- printf "%s-ca" (include "atplatform.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "atplatform.caCertKey" -}}
{{- if .Values.certManager.enabled -}}tls.crt{{- else -}}ca.pem{{- end -}}
{{- end -}}

{{- define "atplatform.caKeyKey" -}}
{{- if .Values.certManager.enabled -}}tls.key{{- else -}}ca-key.pem{{- end -}}
{{- end -}}

{{/* Where a component's serving certificate comes from. Takes (dict "ctx" . "component"
"server"|"directory"); one of
  secret:  its own kubernetes.io/tls Secret (<component>.tls.existingSecret);
  public:  cert-manager, from certManager.publicIssuerRef (a publicly trusted issuer);
  cluster: cert-manager, from the cluster CA (a CA Issuer);
  self:    the pod issues it from the cluster CA at each start, so it mounts the CA key. */}}
{{- define "atplatform.certSource" -}}
{{- $values := index .ctx.Values .component -}}
{{- $cm := .ctx.Values.certManager -}}
{{- if $values.tls.existingSecret -}}secret
{{- else if and $cm.enabled $cm.publicIssuerRef (has .component $cm.publicIssuerFor) -}}public
{{- else if $cm.enabled -}}cluster
{{- else -}}self
{{- end -}}
{{- end -}}

{{/* The Secret holding a component's certificate (tls.crt, tls.key), unless it issues its own. */}}
{{- define "atplatform.leafSecretName" -}}
{{- $values := index .ctx.Values .component -}}
{{- default (printf "%s-%s-tls" (include "atplatform.fullname" .ctx) .component) $values.tls.existingSecret -}}
{{- end -}}

{{/* The CA volume of a component's pods: the Secret's certificate as ca.pem, and its key as
ca-key.pem only where the pod issues its own certificate (certSource self). Under cert-manager,
or with a certificate Secret of its own, no pod that serves the internet holds the key. Takes
(dict "ctx" . "component" "server"). */}}
{{- define "atplatform.caVolume" -}}
- name: cluster-ca
  secret:
    secretName: {{ include "atplatform.caSecretName" .ctx }}
    defaultMode: 0440
    items:
      - key: {{ include "atplatform.caCertKey" .ctx }}
        path: ca.pem
      {{- if eq (include "atplatform.certSource" .) "self" }}
      - key: {{ include "atplatform.caKeyKey" .ctx }}
        path: ca-key.pem
      {{- end }}
{{- with .ctx.Values.tls.extraCaSecret }}
- name: extra-ca
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: {{ $.ctx.Values.tls.extraCaSecretKey }}
        path: ca.pem
{{- end }}
{{- end -}}

{{- define "atplatform.caMount" -}}
- name: cluster-ca
  mountPath: {{ .Values.tls.mountPath }}
  readOnly: true
{{- if .Values.tls.extraCaSecret }}
- name: extra-ca
  mountPath: /etc/atplatform/extra-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* The CA files trusted for peers, the directory and status checks (beside the system's
roots, which the binaries always trust): the cluster CA and tls.extraCaSecret. A JSON list. */}}
{{- define "atplatform.trustedCaFiles" -}}
{{- $files := list (printf "%s/ca.pem" .Values.tls.mountPath) -}}
{{- if .Values.tls.extraCaSecret -}}
{{- $files = append $files "/etc/atplatform/extra-ca/ca.pem" -}}
{{- end -}}
{{- $files | toJson -}}
{{- end -}}

{{/* A component's own certificate (a Secret with tls.crt and tls.key), as a volume and where
it is mounted, unless it issues its own. Takes (dict "ctx" . "component" "server"). */}}
{{- define "atplatform.leafVolume" -}}
{{- if ne (include "atplatform.certSource" .) "self" }}
- name: tls
  secret:
    secretName: {{ include "atplatform.leafSecretName" . }}
    defaultMode: 0440
    items:
      - key: tls.crt
        path: cert.pem
      - key: tls.key
        path: key.pem
{{- end }}
{{- end -}}

{{- define "atplatform.leafMount" -}}
{{- if ne (include "atplatform.certSource" .) "self" }}
- name: tls
  mountPath: /etc/atplatform/tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* The [tls] section of a component's configuration. Takes (dict "ctx" . "component" ...). */}}
{{- define "atplatform.tlsToml" -}}
{{- $source := include "atplatform.certSource" . -}}
{{- $ca := .ctx.Values.tls.mountPath -}}
{{- if eq $source "secret" }}
# Its certificate from the Secret {{ include "atplatform.leafSecretName" . }} (read again when it changes).
{{- else if eq $source "public" }}
# A publicly trusted certificate, issued and renewed by cert-manager through
# certManager.publicIssuerRef (read again when it changes); no pod holds a CA key.
{{- else if eq $source "cluster" }}
# Issued and renewed by cert-manager from the cluster CA (read again when it changes); the
# pod does not hold the CA key.
{{- end }}
{{- if ne $source "self" }}
cert_file = "/etc/atplatform/tls/cert.pem"
key_file = "/etc/atplatform/tls/key.pem"
{{- else }}
# Issued from the cluster CA at each start.
ca_file = "{{ $ca }}/ca.pem"
ca_key_file = "{{ $ca }}/ca-key.pem"
{{- if eq .component "directory" }}
self_signed_names = {{ include "atplatform.directoryTlsNames" .ctx }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The Secret with the Redis URL (a cluster's seed URLs, comma-separated) and its key. */}}
{{- define "atplatform.redisUrlSecretName" -}}
{{- if and (eq .Values.redis.mode "external") .Values.redis.existingSecret -}}
{{- .Values.redis.existingSecret -}}
{{- else if and (eq .Values.redis.mode "cluster") .Values.redis.cluster.existingSecret -}}
{{- .Values.redis.cluster.existingSecret -}}
{{- else -}}
{{- printf "%s-redis" (include "atplatform.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "atplatform.redisUrlSecretKey" -}}
{{- if and (eq .Values.redis.mode "external") .Values.redis.existingSecret -}}
{{- .Values.redis.existingSecretKey -}}
{{- else if eq .Values.redis.mode "cluster" -}}
{{- if .Values.redis.cluster.existingSecret }}{{ .Values.redis.cluster.existingSecretKey }}{{ else }}redis-cluster{{ end -}}
{{- else -}}redis-url{{- end -}}
{{- end -}}

{{/* Name of the in-chart Redis (StatefulSet and headless Service). */}}
{{- define "atplatform.redisName" -}}
{{- printf "%s-redis" (include "atplatform.fullname" .) -}}
{{- end -}}

{{/* The Redis password: given, else the one already in the cluster, else a new one. */}}
{{- define "atplatform.redisPassword" -}}
{{- if .Values.redis.auth.password -}}
{{- .Values.redis.auth.password -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "atplatform.redisUrlSecretName" .) -}}
{{- if and $existing $existing.data (hasKey $existing.data "password") -}}
{{- index $existing.data "password" | b64dec -}}
{{- else -}}
{{- randAlphaNum 32 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The directory's in-cluster name. */}}
{{- define "atplatform.directoryName" -}}
{{- printf "%s-directory" (include "atplatform.fullname" .) -}}
{{- end -}}

{{/* One TOML "key = value" line per entry of a map of scalars and string lists. Numbers are
printed as integers (Helm may read them as float64, e.g. 2.592e+09). */}}
{{- define "atplatform.tomlSettings" -}}
{{- range $key, $value := . }}
{{- if kindIs "float64" $value }}
{{ $key }} = {{ int64 $value }}
{{- else if or (kindIs "int" $value) (kindIs "int64" $value) (kindIs "bool" $value) }}
{{ $key }} = {{ $value }}
{{- else if kindIs "slice" $value }}
{{ $key }} = {{ toJson $value }}
{{- else if kindIs "invalid" $value }}
{{- else }}
{{ $key }} = {{ toString $value | toJson }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Soft spread of one component's pods over zones, then nodes: the scheduler prefers it and
never leaves a pod pending for it. Takes (dict "ctx" . "component" "server"). */}}
{{- define "atplatform.topologySpread" -}}
{{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
- maxSkew: 1
  topologyKey: {{ $key }}
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "atplatform.componentSelector" $ | nindent 6 }}
{{- end }}
{{- end -}}

{{/* Redis over TLS (external mode, rediss://): the CA and client certificate Secrets as
volumes, where they are mounted, and the [store] options naming the files. Each renders
nothing when redis.tls is unset. */}}
{{- define "atplatform.redisTlsVolumes" -}}
{{- with .Values.redis.tls.caSecret }}
- name: redis-ca
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: {{ $.Values.redis.tls.caSecretKey }}
        path: ca.pem
{{- end }}
{{- with .Values.redis.tls.clientSecret }}
- name: redis-client
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: tls.crt
        path: cert.pem
      - key: tls.key
        path: key.pem
{{- end }}
{{- end -}}

{{- define "atplatform.redisTlsMounts" -}}
{{- if .Values.redis.tls.caSecret }}
- name: redis-ca
  mountPath: /etc/atplatform/redis-ca
  readOnly: true
{{- end }}
{{- if .Values.redis.tls.clientSecret }}
- name: redis-client
  mountPath: /etc/atplatform/redis-client
  readOnly: true
{{- end }}
{{- end -}}

{{- define "atplatform.redisTlsToml" -}}
{{- if .Values.redis.tls.caSecret }}
redis_ca_file = "/etc/atplatform/redis-ca/ca.pem"
{{- end }}
{{- if .Values.redis.tls.clientSecret }}
redis_client_cert_file = "/etc/atplatform/redis-client/cert.pem"
redis_client_key_file = "/etc/atplatform/redis-client/key.pem"
{{- end }}
{{- end -}}

{{/* Whether the chart's Redis takes its password from redis.auth.existingSecret: then nothing
about Redis is generated at render time (GitOps: every render is the same). */}}
{{- define "atplatform.redisPasswordGiven" -}}
{{- if and (eq .Values.redis.mode "statefulset") .Values.redis.auth.enabled .Values.redis.auth.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* The Secret and key holding the Redis password: the chart's Redis's, or (external and
cluster modes) redis.passwordSecret. */}}
{{- define "atplatform.redisPasswordRef" -}}
{{- if ne .Values.redis.mode "statefulset" -}}
name: {{ .Values.redis.passwordSecret }}
key: {{ .Values.redis.passwordSecretKey }}
{{- else if include "atplatform.redisPasswordGiven" . -}}
name: {{ .Values.redis.auth.existingSecret }}
key: {{ .Values.redis.auth.existingSecretPasswordKey }}
{{- else -}}
name: {{ include "atplatform.redisUrlSecretName" . }}
key: password
{{- end -}}
{{- end -}}

{{/* Whether the directory and server pods read the Redis password from a file
(store.redis_password_file): the chart's Redis with a password, or redis.passwordSecret. */}}
{{- define "atplatform.redisPasswordFile" -}}
{{- if eq .Values.redis.mode "statefulset" -}}
{{- if .Values.redis.auth.enabled -}}true{{- end -}}
{{- else if .Values.redis.passwordSecret -}}true{{- end -}}
{{- end -}}

{{/* The [store] lines naming the Redis: for the chart's Redis its URL (no password in it);
for an external Redis or Redis Cluster nothing (its URLs, which may hold a password, come from
a Secret through the environment); then the password file and the TLS files. */}}
{{- define "atplatform.redisStoreToml" -}}
{{- if eq .Values.redis.mode "statefulset" }}
redis_url = {{ printf "redis://%s.%s.svc:6379/0" (include "atplatform.redisName" .) .Release.Namespace | toJson }}
{{- end }}
{{- if include "atplatform.redisPasswordFile" . }}
redis_password_file = "/etc/atplatform/redis-auth/password"
{{- end }}
{{- include "atplatform.redisTlsToml" . }}
{{- if gt (int .Values.redis.waitReplicas) 0 }}
redis_wait_replicas = {{ int .Values.redis.waitReplicas }}
redis_wait_timeout_ms = {{ int .Values.redis.waitTimeoutMs }}
{{- end }}
{{- end -}}

{{/* The password Secret as a file, for pods of the Redis's clients. */}}
{{- define "atplatform.redisPasswordVolume" -}}
{{- if include "atplatform.redisPasswordFile" . }}
- name: redis-auth
  secret:
    {{- $ref := include "atplatform.redisPasswordRef" . | fromYaml }}
    secretName: {{ $ref.name }}
    defaultMode: 0440
    items:
      - key: {{ $ref.key }}
        path: password
{{- end }}
{{- end -}}

{{- define "atplatform.redisPasswordMount" -}}
{{- if include "atplatform.redisPasswordFile" . }}
- name: redis-auth
  mountPath: /etc/atplatform/redis-auth
  readOnly: true
{{- end }}
{{- end -}}

{{/* External Redis or Redis Cluster: env entries giving each store of `stores` (variable
prefixes) the Redis URL (`<prefix>__REDIS_URL`) or the cluster's seed URLs, comma-separated
(`<prefix>__REDIS_CLUSTER`, which the binaries split), from its Secret (URLs may hold the
password). Nothing for the chart's Redis, whose URL is in the configuration and its password in
a file. Takes (dict "ctx" . "stores" (list "AT_SERVER__STORE")). */}}
{{- define "atplatform.redisUrlEnv" -}}
{{- $ctx := .ctx -}}
{{- if ne $ctx.Values.redis.mode "statefulset" }}
{{- $suffix := ternary "REDIS_CLUSTER" "REDIS_URL" (eq $ctx.Values.redis.mode "cluster") }}
{{- range .stores }}
- name: {{ . }}__{{ $suffix }}
  valueFrom:
    secretKeyRef:
      name: {{ include "atplatform.redisUrlSecretName" $ctx }}
      key: {{ include "atplatform.redisUrlSecretKey" $ctx }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Pod annotation that changes when the Redis Secret the chart renders changes, so pods
restart with a new password or URL instead of failing with NOAUTH. */}}
{{- define "atplatform.redisChecksum" -}}
checksum/redis-secret: {{ include (print .Template.BasePath "/redis-secret.yaml") . | sha256sum }}
{{- end -}}

{{/* The names on the directory's certificate, as a JSON list: directory.host, its Service's
in-cluster names, localhost, and directory.tlsNames. */}}
{{- define "atplatform.directoryTlsNames" -}}
{{- $svc := include "atplatform.directoryName" . -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) "localhost" -}}
{{- concat (compact (list .Values.directory.host)) $names .Values.directory.tlsNames | uniq | toJson -}}
{{- end -}}

{{/* The names on the nodes' certificate, as a JSON list: every atSign's SNI name, the public
host, and (not on a public certificate, whose issuer could not verify them) the Service's
in-cluster names. */}}
{{- define "atplatform.serverTlsNames" -}}
{{- $svc := printf "%s-server" (include "atplatform.fullname" .) -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list (printf "*.%s" .Values.server.sniDomain) .Values.server.sniDomain -}}
{{- if and .Values.server.publicHost (ne .Values.server.publicHost .Values.server.sniDomain) -}}
{{- $names = append $names .Values.server.publicHost -}}
{{- end -}}
{{- if ne (include "atplatform.certSource" (dict "ctx" . "component" "server")) "public" -}}
{{- $names = concat $names (list $svc (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns)) -}}
{{- end -}}
{{- $names | toJson -}}
{{- end -}}

{{/* The names on the directory's certificate from a public issuer: its public names only. */}}
{{- define "atplatform.directoryPublicNames" -}}
{{- concat (compact (list .Values.directory.host)) .Values.directory.tlsNames | uniq | toJson -}}
{{- end -}}

{{/* Where the atServers reach the directory (config `directory`): server.directoryAddress; else
directory.host when the directory's certificate is public (it names nothing in the cluster);
else its in-cluster Service. */}}
{{- define "atplatform.directoryAddress" -}}
{{- $svc := .Values.directory.service -}}
{{- if .Values.server.directoryAddress -}}
{{- .Values.server.directoryAddress -}}
{{- else if eq (include "atplatform.certSource" (dict "ctx" . "component" "directory")) "public" -}}
{{- printf "%s:%v" .Values.directory.host (ternary $svc.nodePort $svc.port (and (eq $svc.type "NodePort") (not (empty $svc.nodePort)))) -}}
{{- else -}}
{{- printf "%s.%s.svc:%v" (include "atplatform.directoryName" .) .Release.Namespace $svc.port -}}
{{- end -}}
{{- end -}}

{{/* A public Service's annotations: its own, and with externalDns.enabled the host names for
external-dns (not on a ClusterIP Service, whose address is no use outside). Takes (dict "ctx" . "svc" .Values.x.service "hosts" (list ...)). */}}
{{- define "atplatform.serviceAnnotations" -}}
{{- $ann := deepCopy (default dict .svc.annotations) -}}
{{- if and .ctx.Values.externalDns.enabled .hosts (ne .svc.type "ClusterIP") -}}
{{- $_ := set $ann .ctx.Values.externalDns.hostnameAnnotation (join "," .hosts) -}}
{{- if .ctx.Values.externalDns.ttl -}}
{{- $_ := set $ann "external-dns.alpha.kubernetes.io/ttl" (toString .ctx.Values.externalDns.ttl) -}}
{{- end -}}
{{- end -}}
{{- with $ann -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}

{{/* The spec fields of a public Service beside its ports: a reserved address and allowed
sources (LoadBalancer), the traffic policy (not ClusterIP). Takes the service values. */}}
{{- define "atplatform.serviceExposure" -}}
{{- if and (eq .type "LoadBalancer") .loadBalancerIP }}
loadBalancerIP: {{ .loadBalancerIP | quote }}
{{- end }}
{{- if and (eq .type "LoadBalancer") .loadBalancerSourceRanges }}
loadBalancerSourceRanges:
  {{- toYaml .loadBalancerSourceRanges | nindent 2 }}
{{- end }}
{{- if and (ne .type "ClusterIP") .externalTrafficPolicy }}
externalTrafficPolicy: {{ .externalTrafficPolicy }}
{{- end }}
{{- end -}}

{{/* A memory quantity (e.g. 1Gi, 1024Mi, 512M) in bytes, to compare two; an unknown suffix is
returned as it is. */}}
{{- define "atplatform.quantityBytes" -}}
{{- $q := toString . -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $q -}}
{{- $suffix := trimPrefix $number $q -}}
{{- $scale := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 -}}
{{- if and $number (hasKey $scale $suffix) -}}
{{- mulf (float64 $number) (index $scale $suffix) | int64 -}}
{{- else -}}
{{- $q -}}
{{- end -}}
{{- end -}}
