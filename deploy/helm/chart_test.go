// Package chart_test lints and renders the gemproxy Helm chart with Helm's
// own libraries and decodes every manifest strictly into the Kubernetes API
// types, so that a typo, an unknown field or a field at the wrong level
// fails here and not at `helm install` time. It lives in the separate
// module github.com/gemproxy/gemproxy/deploy to keep Helm's dependency tree
// out of gemproxy's own module: run it with `cd deploy && go test ./...`.
package chart_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// chartDir is the chart, relative to this package.
const chartDir = "gemproxy"

// Release options used for every render.
const (
	releaseName      = "mirror"
	releaseNamespace = "gems"
	// fullname is what the chart's fullname helper makes of releaseName.
	fullname = "mirror-gemproxy"
)

// kubeVersion is the cluster version the chart is rendered and linted for
// (Helm's default, v1.20, is older than the chart's kubeVersion).
var kubeVersion = chartutil.KubeVersion{Version: "v1.31.0", Major: "1", Minor: "31"}

// configKeys are gemproxy's config.toml keys, dotted, as documented in
// config.example.toml; gemproxy rejects any other key at start-up.
var configKeys = []string{
	"listen", "upstream", "data_dir", "offline", "log_level", "log_format",
	"max_size", "memory_cache", "max_negative_entries", "keep_yanked", "max_body_size",
	"upstream_concurrency", "upstream_pass_through_concurrency",
	"upstream_redirect_hosts", "sweep_interval",
	"upstream_timeouts.connect", "upstream_timeouts.first_byte",
	"upstream_timeouts.idle", "upstream_timeouts.fill",
	"server.read_timeout", "server.write_timeout", "server.idle_timeout",
	"server.max_header_bytes", "server.max_connections",
	"server.shutdown_grace", "server.drain_timeout",
	"shared_store.url", "shared_store.endpoint", "shared_store.versions_poll",
}

// classKeys are the keys of every [class.CLASS] table.
var classKeys = []string{"ttl", "negative_ttl", "max_stale", "stale_while_revalidate",
	"revalidate_timeout", "first_byte_timeout", "idle_timeout", "max_response_size"}

// cacheClasses are gemproxy's cache classes, the tables under [class].
var cacheClasses = []string{"versions", "info", "names", "full_index", "quick_spec", "gem", "api"}

func init() {
	for _, c := range cacheClasses {
		configTables = append(configTables, "class."+c)
		for _, k := range classKeys {
			configKeys = append(configKeys, "class."+c+"."+k)
			if k == "max_response_size" {
				sizeKeys = append(sizeKeys, "class."+c+"."+k)
			} else {
				durationKeys = append(durationKeys, "class."+c+"."+k)
			}
		}
	}
}

// configTables are the tables of config.toml.
var configTables = []string{"class", "upstream_timeouts", "server", "shared_store"}

// durationKeys and sizeKeys are the keys whose values are Go durations and
// byte sizes.
var (
	durationKeys = []string{
		"sweep_interval",
		"upstream_timeouts.connect", "upstream_timeouts.first_byte",
		"upstream_timeouts.idle", "upstream_timeouts.fill",
		"server.read_timeout", "server.write_timeout", "server.idle_timeout",
		"server.shutdown_grace", "server.drain_timeout",
		"shared_store.versions_poll",
	}
	sizeKeys = []string{"max_size", "memory_cache", "max_body_size"}
)

// customValues turns on every optional part of the chart and changes most
// defaults.
func customValues() map[string]any {
	return mustYAML(`
replicaCount: 3
image:
  repository: registry.example.com/gemproxy
  digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
imagePullSecrets:
  - name: regcred
commonLabels:
  team: platform
config:
  upstream: https://gems.example.com/base
  logLevel: debug
  logFormat: text
  offline: true
  maxSize: 50GiB
  memoryCache: 0
  negativeTtl: "0"
  keepYanked: true
  ttl:
    versions: 30s
    info: 2m
    names: 5m
    fullIndex: 1h30m
    api: "0"
  shutdownGraceSeconds: 10
  drainTimeoutSeconds: 300
  extraConfig: |
    upstream_concurrency = 64
    max_body_size = "1GiB"
    server.max_connections = 20000

    [upstream_timeouts]
    fill = "20m"
terminationGracePeriodSeconds: 400
serviceAccount:
  create: true
  name: gemproxy-sa
  annotations:
    eks.amazonaws.com/role-arn: arn:aws:iam::123456789012:role/gemproxy
podAnnotations:
  example.com/scrape: "true"
podLabels:
  tier: cache
resources:
  requests:
    cpu: 500m
    memory: 1Gi
  limits:
    cpu: 4
    memory: 2Gi
extraEnv:
  - name: GOMEMLIMIT
    value: 1800MiB
sharedStore:
  url: s3://ci-gems/mirror
  endpoint: http://minio.storage:9000
  versionsPoll: 10s
  region: eu-west-1
  existingSecret: gemproxy-s3
persistence:
  storageClass: fast-ssd
  size: 100Gi
  annotations:
    backup.example.com/skip: "true"
  retentionPolicy:
    whenDeleted: Delete
    whenScaled: Retain
service:
  type: NodePort
  port: 80
  nodePort: 30292
  sessionAffinity: ClientIP
  annotations:
    example.com/internal: "true"
ingress:
  enabled: true
  className: nginx
  annotations:
    nginx.ingress.kubernetes.io/proxy-body-size: 500m
  hosts:
    - host: gems.example.com
      paths:
        - path: /
          pathType: Prefix
  tls:
    - secretName: gems-tls
      hosts:
        - gems.example.com
serviceMonitor:
  enabled: true
  namespace: monitoring
  labels:
    release: kube-prometheus-stack
  interval: 15s
  scrapeTimeout: 5s
  relabelings:
    - sourceLabels: [__meta_kubernetes_pod_name]
      targetLabel: pod
  metricRelabelings:
    - sourceLabels: [__name__]
      regex: go_gc_.*
      action: drop
podDisruptionBudget:
  enabled: true
  minAvailable: 2
priorityClassName: high
nodeSelector:
  kubernetes.io/os: linux
tolerations:
  - key: dedicated
    operator: Equal
    value: cache
    effect: NoSchedule
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              app.kubernetes.io/name: gemproxy
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        app.kubernetes.io/name: gemproxy
`)
}

func mustYAML(s string) map[string]any {
	var m map[string]any
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		panic(err)
	}
	return m
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return ch
}

// renderValues coalesces vals over the chart defaults, validates them
// against values.schema.json and adds the release options, as `helm
// install mirror --namespace gems` would.
func renderValues(ch *chart.Chart, vals map[string]any) (chartutil.Values, error) {
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = kubeVersion
	opts := chartutil.ReleaseOptions{Name: releaseName, Namespace: releaseNamespace, Revision: 1, IsInstall: true}
	return chartutil.ToRenderValues(ch, vals, opts, caps)
}

// render renders the chart with vals and returns the output by template
// path (e.g. "gemproxy/templates/statefulset.yaml").
func render(ch *chart.Chart, vals map[string]any) (map[string]string, error) {
	rv, err := renderValues(ch, vals)
	if err != nil {
		return nil, err
	}
	return engine.Render(ch, rv)
}

func mustRender(t *testing.T, vals map[string]any) map[string]string {
	t.Helper()
	out, err := render(loadChart(t), vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return out
}

// manifests holds the decoded objects of one render.
type manifests struct {
	statefulSets    []*appsv1.StatefulSet
	services        []*corev1.Service
	configMaps      []*corev1.ConfigMap
	serviceAccounts []*corev1.ServiceAccount
	pdbs            []*policyv1.PodDisruptionBudget
	ingresses       []*networkingv1.Ingress
	serviceMonitors []*monitoringv1.ServiceMonitor
	// all lists every object's metadata, for checks common to all kinds.
	all []objectRef
	// notes is the rendered NOTES.txt.
	notes string
}

type objectRef struct {
	kind string
	meta *metav1.ObjectMeta
}

// decodeStrict decodes one YAML document into out, failing on unknown or
// duplicate fields (sigs.k8s.io/yaml converts to JSON and decodes with
// DisallowUnknownFields).
func decodeStrict(doc []byte, out any) error {
	return yaml.UnmarshalStrict(doc, out)
}

// decodeAll splits every rendered template into YAML documents and decodes
// each strictly into its API type. An unexpected apiVersion/kind fails.
func decodeAll(t *testing.T, out map[string]string) *manifests {
	t.Helper()
	m := &manifests{}
	for _, name := range slices.Sorted(maps.Keys(out)) {
		content := out[name]
		switch path.Ext(name) {
		case ".txt":
			if path.Base(name) == "NOTES.txt" {
				m.notes = content
			}
			continue
		case ".tpl":
			if strings.TrimSpace(content) != "" {
				t.Errorf("%s: helper template rendered output: %q", name, content)
			}
			continue
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(content)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: read YAML: %v", name, err)
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s: %v\n%s", name, err, doc)
			}
			var obj any
			var meta *metav1.ObjectMeta
			switch gvk := tm.APIVersion + "/" + tm.Kind; gvk {
			case "apps/v1/StatefulSet":
				o := &appsv1.StatefulSet{}
				m.statefulSets, obj, meta = append(m.statefulSets, o), o, &o.ObjectMeta
			case "v1/Service":
				o := &corev1.Service{}
				m.services, obj, meta = append(m.services, o), o, &o.ObjectMeta
			case "v1/ConfigMap":
				o := &corev1.ConfigMap{}
				m.configMaps, obj, meta = append(m.configMaps, o), o, &o.ObjectMeta
			case "v1/ServiceAccount":
				o := &corev1.ServiceAccount{}
				m.serviceAccounts, obj, meta = append(m.serviceAccounts, o), o, &o.ObjectMeta
			case "policy/v1/PodDisruptionBudget":
				o := &policyv1.PodDisruptionBudget{}
				m.pdbs, obj, meta = append(m.pdbs, o), o, &o.ObjectMeta
			case "networking.k8s.io/v1/Ingress":
				o := &networkingv1.Ingress{}
				m.ingresses, obj, meta = append(m.ingresses, o), o, &o.ObjectMeta
			case "monitoring.coreos.com/v1/ServiceMonitor":
				o := &monitoringv1.ServiceMonitor{}
				m.serviceMonitors, obj, meta = append(m.serviceMonitors, o), o, &o.ObjectMeta
			default:
				t.Fatalf("%s: unexpected object %s\n%s", name, gvk, doc)
			}
			if err := decodeStrict(doc, obj); err != nil {
				t.Fatalf("%s: strict decode of %s: %v\n%s", name, tm.Kind, err, doc)
			}
			m.all = append(m.all, objectRef{kind: tm.Kind, meta: meta})
		}
	}
	return m
}

// stripComments drops comment-only lines, so that a document holding only
// comments counts as empty.
func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for line := range strings.SplitSeq(string(doc), "\n") {
		if s := strings.TrimSpace(line); s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// lintChart runs Helm's chart linter (what `helm lint --strict` runs) and
// fails on any message of severity warning or error.
func lintChart(t *testing.T, vals map[string]any) {
	t.Helper()
	kv := kubeVersion
	l := lint.AllWithKubeVersion(chartDir, vals, releaseNamespace, &kv)
	for _, msg := range l.Messages {
		if msg.Severity >= support.WarningSev {
			t.Errorf("helm lint: %s", msg)
		} else {
			t.Logf("helm lint: %s", msg)
		}
	}
}

func TestLintDefaults(t *testing.T) { lintChart(t, nil) }

func TestLintCustomValues(t *testing.T) { lintChart(t, customValues()) }

func TestRenderDefaults(t *testing.T) {
	m := decodeAll(t, mustRender(t, nil))

	if n := len(m.statefulSets); n != 1 {
		t.Fatalf("want 1 StatefulSet, got %d", n)
	}
	if len(m.configMaps) != 1 || len(m.services) != 2 || len(m.serviceAccounts) != 1 {
		t.Fatalf("want 1 ConfigMap, 2 Services, 1 ServiceAccount; got %d, %d, %d",
			len(m.configMaps), len(m.services), len(m.serviceAccounts))
	}
	if len(m.pdbs)+len(m.ingresses)+len(m.serviceMonitors) != 0 {
		t.Errorf("PDB, Ingress and ServiceMonitor must be off by default; got %d, %d, %d",
			len(m.pdbs), len(m.ingresses), len(m.serviceMonitors))
	}
	checkCommon(t, m)

	sts := m.statefulSets[0]
	if got := *sts.Spec.Replicas; got != 1 {
		t.Errorf("replicas = %d, want 1", got)
	}
	c := gemproxyContainer(t, sts)
	if got, want := c.Image, "ghcr.io/gemproxy/gemproxy:0.1.0"; got != want {
		t.Errorf("image = %q, want %q (appVersion)", got, want)
	}
	res := c.Resources
	for _, q := range []struct {
		name string
		got  resource.Quantity
	}{
		{"requests.cpu", res.Requests[corev1.ResourceCPU]},
		{"requests.memory", res.Requests[corev1.ResourceMemory]},
		{"limits.cpu", res.Limits[corev1.ResourceCPU]},
		{"limits.memory", res.Limits[corev1.ResourceMemory]},
	} {
		if q.got.IsZero() {
			t.Errorf("resources.%s has no default", q.name)
		}
	}
	if a := sts.Spec.Template.Spec.AutomountServiceAccountToken; a == nil || *a {
		t.Errorf("automountServiceAccountToken must default to false")
	}

	cfg := checkConfigMap(t, m)
	for key, want := range map[string]any{
		"upstream": "https://rubygems.org", "log_level": "info", "log_format": "json",
		"offline": false, "max_size": "10GiB", "memory_cache": "64MiB", "keep_yanked": false,
		"class.versions.ttl": "60s", "class.info.ttl": "60s", "class.names.ttl": "60s",
		"class.full_index.ttl": "60s", "class.api.ttl": "60s",
		"class.versions.negative_ttl": "60s", "class.gem.negative_ttl": "60s", "class.api.negative_ttl": "60s",
		"server.shutdown_grace": "5s", "server.drain_timeout": "60s",
	} {
		if got := cfg[key]; got != want {
			t.Errorf("config.toml %s = %#v, want %#v", key, got, want)
		}
	}
	checkGrace(t, sts, cfg)

	vct := sts.Spec.VolumeClaimTemplates[0]
	if got := vct.Spec.Resources.Requests[corev1.ResourceStorage]; got.String() != "20Gi" {
		t.Errorf("default volume size = %s, want 20Gi", got.String())
	}
	if vct.Spec.StorageClassName != nil {
		t.Errorf("storageClassName must be unset by default (cluster default class), got %q", *vct.Spec.StorageClassName)
	}

	for _, want := range []string{
		"bundle config set --global mirror.https://rubygems.org http://mirror-gemproxy.gems.svc.cluster.local:9292\n",
		"gem sources --add http://mirror-gemproxy.gems.svc.cluster.local:9292/ --remove https://rubygems.org/\n",
		"kubectl --namespace gems port-forward svc/mirror-gemproxy 9292:9292",
	} {
		if !strings.Contains(m.notes, want) {
			t.Errorf("NOTES.txt lacks %q:\n%s", want, m.notes)
		}
	}
	if strings.Contains(m.notes, "<no value>") {
		t.Errorf("NOTES.txt has an unset value:\n%s", m.notes)
	}
}

func TestRenderCustomValues(t *testing.T) {
	m := decodeAll(t, mustRender(t, customValues()))
	if len(m.statefulSets) != 1 || len(m.configMaps) != 1 || len(m.services) != 2 ||
		len(m.serviceAccounts) != 1 || len(m.pdbs) != 1 || len(m.ingresses) != 1 || len(m.serviceMonitors) != 1 {
		t.Fatalf("want one of each object (two Services); got sts=%d cm=%d svc=%d sa=%d pdb=%d ing=%d sm=%d",
			len(m.statefulSets), len(m.configMaps), len(m.services), len(m.serviceAccounts),
			len(m.pdbs), len(m.ingresses), len(m.serviceMonitors))
	}
	checkCommon(t, m)

	sts := m.statefulSets[0]
	pod := sts.Spec.Template.Spec
	c := gemproxyContainer(t, sts)
	if got := *sts.Spec.Replicas; got != 3 {
		t.Errorf("replicas = %d, want 3", got)
	}
	if want := "registry.example.com/gemproxy@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"; c.Image != want {
		t.Errorf("image = %q, want %q", c.Image, want)
	}
	if got := c.Resources.Limits[corev1.ResourceMemory]; got.String() != "2Gi" {
		t.Errorf("limits.memory = %s, want 2Gi", got.String())
	}
	if got := c.Resources.Requests[corev1.ResourceCPU]; got.String() != "500m" {
		t.Errorf("requests.cpu = %s, want 500m", got.String())
	}
	if len(c.Env) != 2 || c.Env[0].Name != "AWS_REGION" || c.Env[0].Value != "eu-west-1" || c.Env[1].Name != "GOMEMLIMIT" {
		t.Errorf("sharedStore.region and extraEnv not rendered: %+v", c.Env)
	}
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != "gemproxy-s3" {
		t.Errorf("sharedStore.existingSecret not rendered as envFrom: %+v", c.EnvFrom)
	}
	if pod.ServiceAccountName != "gemproxy-sa" || m.serviceAccounts[0].Name != "gemproxy-sa" {
		t.Errorf("serviceAccount name: pod uses %q, object is %q; want gemproxy-sa", pod.ServiceAccountName, m.serviceAccounts[0].Name)
	}
	if pod.PriorityClassName != "high" || pod.NodeSelector["kubernetes.io/os"] != "linux" ||
		len(pod.Tolerations) != 1 || pod.Affinity == nil || pod.Affinity.PodAntiAffinity == nil ||
		len(pod.TopologySpreadConstraints) != 1 || len(pod.ImagePullSecrets) != 1 {
		t.Errorf("scheduling values not rendered: %+v", pod)
	}
	if sts.Spec.Template.Labels["tier"] != "cache" || sts.Spec.Template.Annotations["example.com/scrape"] != "true" {
		t.Errorf("podLabels/podAnnotations not rendered: %v %v", sts.Spec.Template.Labels, sts.Spec.Template.Annotations)
	}
	rp := sts.Spec.PersistentVolumeClaimRetentionPolicy
	if rp == nil || rp.WhenDeleted != appsv1.DeletePersistentVolumeClaimRetentionPolicyType || rp.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
		t.Errorf("persistentVolumeClaimRetentionPolicy = %+v", rp)
	}
	vct := sts.Spec.VolumeClaimTemplates[0]
	if vct.Spec.StorageClassName == nil || *vct.Spec.StorageClassName != "fast-ssd" {
		t.Errorf("storageClassName = %v, want fast-ssd", vct.Spec.StorageClassName)
	}
	if got := vct.Spec.Resources.Requests[corev1.ResourceStorage]; got.String() != "100Gi" {
		t.Errorf("volume size = %s, want 100Gi", got.String())
	}

	cfg := checkConfigMap(t, m)
	for key, want := range map[string]any{
		"upstream": "https://gems.example.com/base", "log_level": "debug", "log_format": "text",
		"offline": true, "max_size": "50GiB", "memory_cache": "0", "keep_yanked": true,
		"class.versions.ttl": "30s", "class.info.ttl": "2m", "class.names.ttl": "5m",
		"class.full_index.ttl": "1h30m", "class.api.ttl": "0",
		"class.info.negative_ttl": "0", "class.quick_spec.negative_ttl": "0",
		"server.shutdown_grace": "10s", "server.drain_timeout": "300s",
		"shared_store.url": "s3://ci-gems/mirror", "shared_store.endpoint": "http://minio.storage:9000",
		"shared_store.versions_poll": "10s",
		// from extraConfig
		"upstream_concurrency": int64(64), "max_body_size": "1GiB",
		"server.max_connections": int64(20000), "upstream_timeouts.fill": "20m",
	} {
		if got := cfg[key]; got != want {
			t.Errorf("config.toml %s = %#v, want %#v", key, got, want)
		}
	}
	checkGrace(t, sts, cfg)
	if got := *pod.TerminationGracePeriodSeconds; got != 400 {
		t.Errorf("terminationGracePeriodSeconds = %d, want the explicit 400", got)
	}

	svc := serviceNamed(t, m, fullname)
	if svc.Spec.Type != corev1.ServiceTypeNodePort || svc.Spec.Ports[0].Port != 80 || svc.Spec.Ports[0].NodePort != 30292 {
		t.Errorf("service type/port/nodePort = %s/%d/%d, want NodePort/80/30292",
			svc.Spec.Type, svc.Spec.Ports[0].Port, svc.Spec.Ports[0].NodePort)
	}
	if svc.Spec.SessionAffinity != corev1.ServiceAffinityClientIP {
		t.Errorf("service sessionAffinity = %q, want ClientIP", svc.Spec.SessionAffinity)
	}

	pdb := m.pdbs[0]
	if pdb.Spec.MinAvailable == nil || *pdb.Spec.MinAvailable != intstr.FromInt32(2) || pdb.Spec.MaxUnavailable != nil {
		t.Errorf("PDB minAvailable/maxUnavailable = %v/%v, want 2/unset", pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable)
	}
	checkSelects(t, "PodDisruptionBudget", pdb.Spec.Selector, sts)

	ing := m.ingresses[0]
	if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != "nginx" {
		t.Errorf("ingressClassName = %v, want nginx", ing.Spec.IngressClassName)
	}
	if len(ing.Spec.TLS) != 1 || ing.Spec.TLS[0].SecretName != "gems-tls" {
		t.Errorf("ingress TLS = %+v", ing.Spec.TLS)
	}
	if len(ing.Spec.Rules) != 1 || ing.Spec.Rules[0].Host != "gems.example.com" {
		t.Fatalf("ingress rules = %+v", ing.Spec.Rules)
	}
	backend := ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service
	if backend == nil || backend.Name != fullname || backend.Port.Name != "http" {
		t.Errorf("ingress backend = %+v, want service %s port http", backend, fullname)
	}

	sm := m.serviceMonitors[0]
	if sm.Namespace != "monitoring" || sm.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor namespace/labels = %q/%v", sm.Namespace, sm.Labels)
	}
	if got := sm.Spec.NamespaceSelector.MatchNames; !slices.Equal(got, []string{releaseNamespace}) {
		t.Errorf("ServiceMonitor namespaceSelector = %v, want [%s]", got, releaseNamespace)
	}
	if len(sm.Spec.Endpoints) != 1 {
		t.Fatalf("ServiceMonitor endpoints = %+v", sm.Spec.Endpoints)
	}
	ep := sm.Spec.Endpoints[0]
	if ep.Port != "http" || ep.Path != "/metrics" || ep.Interval != "15s" || ep.ScrapeTimeout != "5s" ||
		len(ep.RelabelConfigs) != 1 || len(ep.MetricRelabelConfigs) != 1 {
		t.Errorf("ServiceMonitor endpoint = %+v", ep)
	}
	// It must select the regular Service and not the headless one, or
	// every pod would be scraped twice.
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil {
		t.Fatalf("ServiceMonitor selector: %v", err)
	}
	var selected []string
	for _, s := range m.services {
		if sel.Matches(labels.Set(s.Labels)) {
			selected = append(selected, s.Name)
		}
	}
	if !slices.Equal(selected, []string{fullname}) {
		t.Errorf("ServiceMonitor selects services %v, want only %s", selected, fullname)
	}

	for _, want := range []string{
		"bundle config set --global mirror.https://rubygems.org http://mirror-gemproxy.gems.svc.cluster.local:80\n",
		"gem sources --add http://mirror-gemproxy.gems.svc.cluster.local:80/ --remove https://rubygems.org/\n",
		"bundle config set --global mirror.https://rubygems.org https://gems.example.com\n",
	} {
		if !strings.Contains(m.notes, want) {
			t.Errorf("NOTES.txt lacks %q:\n%s", want, m.notes)
		}
	}
}

// checkCommon checks what every render must satisfy: names, namespaces,
// labels, the StatefulSet's pod spec and its Services.
func checkCommon(t *testing.T, m *manifests) {
	t.Helper()
	for _, o := range m.all {
		if errs := validation.IsDNS1123Subdomain(o.meta.Name); len(errs) > 0 {
			t.Errorf("%s %q: invalid name: %v", o.kind, o.meta.Name, errs)
		}
		if o.kind != "ServiceMonitor" && o.meta.Namespace != releaseNamespace {
			t.Errorf("%s %s: namespace %q, want %q", o.kind, o.meta.Name, o.meta.Namespace, releaseNamespace)
		}
		for _, k := range []string{
			"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
			"app.kubernetes.io/managed-by", "helm.sh/chart",
		} {
			if o.meta.Labels[k] == "" {
				t.Errorf("%s %s: label %s missing", o.kind, o.meta.Name, k)
			}
		}
		for k, v := range o.meta.Labels {
			if errs := validation.IsQualifiedName(k); len(errs) > 0 {
				t.Errorf("%s %s: label key %q: %v", o.kind, o.meta.Name, k, errs)
			}
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				t.Errorf("%s %s: label %s=%q: %v", o.kind, o.meta.Name, k, v, errs)
			}
		}
	}

	sts := m.statefulSets[0]
	pod := sts.Spec.Template.Spec
	c := gemproxyContainer(t, sts)

	// The selector is immutable: it must hold only the stable selector
	// labels, and must match the pod template.
	wantSel := map[string]string{"app.kubernetes.io/name": "gemproxy", "app.kubernetes.io/instance": releaseName}
	if !maps.Equal(sts.Spec.Selector.MatchLabels, wantSel) || len(sts.Spec.Selector.MatchExpressions) > 0 {
		t.Errorf("StatefulSet selector = %+v, want matchLabels %v", sts.Spec.Selector, wantSel)
	}
	checkSelects(t, "StatefulSet", sts.Spec.Selector, sts)

	// Command line and config file.
	if want := []string{"serve", "--config", "/etc/gemproxy/config.toml"}; !slices.Equal(c.Args, want) {
		t.Errorf("args = %q, want %q", c.Args, want)
	}
	if len(c.Command) != 0 {
		t.Errorf("command = %q: the image's ENTRYPOINT must be kept", c.Command)
	}

	// Probes.
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"liveness", c.LivenessProbe, "/healthz"},
		{"readiness", c.ReadinessProbe, "/readyz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s probe: want an httpGet probe, got %+v", p.name, p.probe)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port != intstr.FromString("http") {
			t.Errorf("%s probe: GET %s on port %s, want %s on port http", p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path)
		}
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != 9292 {
		t.Errorf("container ports = %+v, want http 9292", c.Ports)
	}

	// Security context.
	psc := pod.SecurityContext
	if psc == nil || !isTrue(psc.RunAsNonRoot) || !is64(psc.RunAsUser, 65532) || !is64(psc.RunAsGroup, 65532) ||
		!is64(psc.FSGroup, 65532) || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext = %+v", psc)
	}
	sc := c.SecurityContext
	if sc == nil || !isTrue(sc.RunAsNonRoot) || !is64(sc.RunAsUser, 65532) || !is64(sc.RunAsGroup, 65532) ||
		!isTrue(sc.ReadOnlyRootFilesystem) || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Privileged == nil || *sc.Privileged ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container securityContext = %+v", sc)
	}
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Errorf("enableServiceLinks must be false (service variables would be named GEMPROXY_*)")
	}

	// Volumes: the cache on a per-replica PVC, the config read-only, a
	// writable /tmp (the root filesystem is read-only).
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.MountPath] = vm
	}
	if vm, ok := mounts["/var/lib/gemproxy"]; !ok || vm.Name != "data" || vm.ReadOnly {
		t.Errorf("no writable mount of volume data at /var/lib/gemproxy: %+v", c.VolumeMounts)
	}
	if vm, ok := mounts["/etc/gemproxy"]; !ok || vm.Name != "config" || !vm.ReadOnly {
		t.Errorf("no read-only mount of volume config at /etc/gemproxy: %+v", c.VolumeMounts)
	}
	if vm, ok := mounts["/tmp"]; !ok || vm.ReadOnly {
		t.Errorf("no writable /tmp: %+v", c.VolumeMounts)
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("want one volumeClaimTemplate, got %d", len(sts.Spec.VolumeClaimTemplates))
	}
	vct := sts.Spec.VolumeClaimTemplates[0]
	if vct.Name != "data" || !slices.Equal(vct.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
		t.Errorf("volumeClaimTemplate = %s %v, want data [ReadWriteOnce]", vct.Name, vct.Spec.AccessModes)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	if _, ok := volumes["data"]; ok {
		t.Errorf("pod volume data shadows the volumeClaimTemplate")
	}
	if v, ok := volumes["config"]; !ok || v.ConfigMap == nil || v.ConfigMap.Name != m.configMaps[0].Name {
		t.Errorf("config volume = %+v, want ConfigMap %s", v, m.configMaps[0].Name)
	}

	// The config checksum annotation is the one that rolls the pods.
	if a := sts.Spec.Template.Annotations["checksum/config"]; len(a) != 64 {
		t.Errorf("checksum/config annotation = %q, want a sha256", a)
	}

	// Services: a headless one governing the StatefulSet and a regular one,
	// both on a port named http that targets the container port.
	headless := serviceNamed(t, m, fullname+"-headless")
	if sts.Spec.ServiceName != headless.Name || headless.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("StatefulSet serviceName %q, headless clusterIP %q", sts.Spec.ServiceName, headless.Spec.ClusterIP)
	}
	regular := serviceNamed(t, m, fullname)
	if regular.Spec.ClusterIP == corev1.ClusterIPNone {
		t.Errorf("service %s must not be headless", regular.Name)
	}
	for _, s := range []*corev1.Service{headless, regular} {
		if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Name != "http" || s.Spec.Ports[0].TargetPort != intstr.FromString("http") {
			t.Errorf("service %s ports = %+v, want one port http -> http", s.Name, s.Spec.Ports)
		}
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(sts.Spec.Template.Labels)) || len(s.Spec.Selector) == 0 {
			t.Errorf("service %s selector %v does not select the pods %v", s.Name, s.Spec.Selector, sts.Spec.Template.Labels)
		}
	}
	if headless.Spec.Ports[0].Port != 9292 {
		t.Errorf("headless service port = %d, want 9292", headless.Spec.Ports[0].Port)
	}

	sa := m.serviceAccounts
	if len(sa) == 1 && (sa[0].AutomountServiceAccountToken == nil || *sa[0].AutomountServiceAccountToken) {
		t.Errorf("ServiceAccount must not automount a token")
	}
}

// checkSelects fails unless sel matches the StatefulSet's pod labels.
func checkSelects(t *testing.T, what string, sel *metav1.LabelSelector, sts *appsv1.StatefulSet) {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("%s selector: %v", what, err)
	}
	if s.Empty() || !s.Matches(labels.Set(sts.Spec.Template.Labels)) {
		t.Errorf("%s selector %v does not select the pods %v", what, sel, sts.Spec.Template.Labels)
	}
}

// checkGrace fails unless terminationGracePeriodSeconds exceeds
// server.shutdown_grace + server.drain_timeout of the rendered config.
func checkGrace(t *testing.T, sts *appsv1.StatefulSet, cfg map[string]any) {
	t.Helper()
	grace := parseDuration(t, cfg["server.shutdown_grace"])
	drain := parseDuration(t, cfg["server.drain_timeout"])
	tgps := sts.Spec.Template.Spec.TerminationGracePeriodSeconds
	if tgps == nil || time.Duration(*tgps)*time.Second <= grace+drain {
		t.Errorf("terminationGracePeriodSeconds = %v, want more than shutdown_grace %s + drain_timeout %s", tgps, grace, drain)
	}
}

func parseDuration(t *testing.T, v any) time.Duration {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		t.Fatalf("duration %#v is not a string", v)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("duration %q: %v", s, err)
	}
	return d
}

// checkConfigMap parses config.toml of the one ConfigMap, checks that every
// key is one gemproxy knows, that values have the right types and that the
// chart set listen and data_dir, and returns the values by dotted key.
func checkConfigMap(t *testing.T, m *manifests) map[string]any {
	t.Helper()
	cm := m.configMaps[0]
	if len(cm.Data) != 1 {
		t.Errorf("ConfigMap %s: want only config.toml, got keys %v", cm.Name, slices.Sorted(maps.Keys(cm.Data)))
	}
	text, ok := cm.Data["config.toml"]
	if !ok {
		t.Fatalf("ConfigMap %s has no config.toml", cm.Name)
	}
	var raw map[string]any
	md, err := toml.Decode(text, &raw)
	if err != nil {
		t.Fatalf("config.toml does not parse as TOML: %v\n%s", err, text)
	}
	flat := map[string]any{}
	for _, k := range md.Keys() {
		key := k.String()
		v := lookup(raw, k)
		if _, isTable := v.(map[string]any); isTable {
			if !slices.Contains(configTables, key) {
				t.Errorf("config.toml: unknown table [%s]", key)
			}
			continue
		}
		if !slices.Contains(configKeys, key) {
			t.Errorf("config.toml: unknown key %s", key)
		}
		flat[key] = v
	}
	if flat["listen"] != ":9292" || flat["data_dir"] != "/var/lib/gemproxy" {
		t.Errorf("config.toml: listen = %#v, data_dir = %#v; want \":9292\" and \"/var/lib/gemproxy\"", flat["listen"], flat["data_dir"])
	}
	for _, k := range durationKeys {
		if v, ok := flat[k]; ok {
			parseDuration(t, v)
		}
	}
	for _, k := range sizeKeys {
		if v, ok := flat[k]; ok {
			if s, isString := v.(string); !isString || !sizeRE(s) {
				t.Errorf("config.toml: %s = %#v is not a size", k, v)
			}
		}
	}
	for _, k := range []string{"offline", "keep_yanked"} {
		if _, ok := flat[k].(bool); !ok {
			t.Errorf("config.toml: %s = %#v, want a boolean", k, flat[k])
		}
	}
	return flat
}

// sizeRE reports whether s is a gemproxy size: digits, then optionally B,
// KiB, MiB, GiB or TiB.
func sizeRE(s string) bool {
	digits := strings.TrimLeft(s, "0123456789")
	if len(digits) == len(s) {
		return false
	}
	switch strings.ToLower(strings.TrimSpace(digits)) {
	case "", "b", "kib", "mib", "gib", "tib":
		return true
	}
	return false
}

func lookup(m map[string]any, key toml.Key) any {
	var v any = m
	for _, part := range key {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[part]
	}
	return v
}

func gemproxyContainer(t *testing.T, sts *appsv1.StatefulSet) corev1.Container {
	t.Helper()
	cs := sts.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "gemproxy" {
		t.Fatalf("want one container named gemproxy, got %d", len(cs))
	}
	return cs[0]
}

func serviceNamed(t *testing.T, m *manifests, name string) *corev1.Service {
	t.Helper()
	for _, s := range m.services {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no Service %s", name)
	return nil
}

func isTrue(b *bool) bool { return b != nil && *b }

func is64(p *int64, want int64) bool { return p != nil && *p == want }

func TestPersistenceDisabledUsesEmptyDir(t *testing.T) {
	m := decodeAll(t, mustRender(t, mustYAML(`
persistence:
  enabled: false
  emptyDirSizeLimit: 5Gi
`)))
	sts := m.statefulSets[0]
	if len(sts.Spec.VolumeClaimTemplates) != 0 {
		t.Errorf("volumeClaimTemplates rendered with persistence disabled")
	}
	var data *corev1.Volume
	for i, v := range sts.Spec.Template.Spec.Volumes {
		if v.Name == "data" {
			data = &sts.Spec.Template.Spec.Volumes[i]
		}
	}
	if data == nil || data.EmptyDir == nil || data.EmptyDir.SizeLimit == nil || data.EmptyDir.SizeLimit.String() != "5Gi" {
		t.Errorf("data volume = %+v, want an emptyDir of 5Gi", data)
	}
	// Without a size limit too.
	m = decodeAll(t, mustRender(t, mustYAML("persistence: {enabled: false}")))
	found := false
	for _, v := range m.statefulSets[0].Spec.Template.Spec.Volumes {
		found = found || (v.Name == "data" && v.EmptyDir != nil && v.EmptyDir.SizeLimit == nil)
	}
	if !found {
		t.Errorf("no unlimited emptyDir data volume")
	}
}

func TestServiceAccountNotCreated(t *testing.T) {
	m := decodeAll(t, mustRender(t, mustYAML("serviceAccount: {create: false}")))
	if len(m.serviceAccounts) != 0 {
		t.Errorf("ServiceAccount rendered with create: false")
	}
	if got := m.statefulSets[0].Spec.Template.Spec.ServiceAccountName; got != "default" {
		t.Errorf("serviceAccountName = %q, want default", got)
	}
}

func TestPDBMaxUnavailableDefault(t *testing.T) {
	m := decodeAll(t, mustRender(t, mustYAML("podDisruptionBudget: {enabled: true}")))
	if len(m.pdbs) != 1 {
		t.Fatalf("want a PDB")
	}
	p := m.pdbs[0].Spec
	if p.MaxUnavailable == nil || *p.MaxUnavailable != intstr.FromInt32(1) || p.MinAvailable != nil {
		t.Errorf("PDB = %+v, want maxUnavailable 1 only", p)
	}
	m = decodeAll(t, mustRender(t, mustYAML(`podDisruptionBudget: {enabled: true, maxUnavailable: "50%"}`)))
	if p := m.pdbs[0].Spec; p.MaxUnavailable == nil || *p.MaxUnavailable != intstr.FromString("50%") {
		t.Errorf("PDB = %+v, want maxUnavailable 50%%", p)
	}
}

func TestConfigChecksumRollsPods(t *testing.T) {
	checksum := func(vals map[string]any) string {
		return decodeAll(t, mustRender(t, vals)).statefulSets[0].Spec.Template.Annotations["checksum/config"]
	}
	a, b := checksum(nil), checksum(mustYAML("config: {logLevel: debug}"))
	if a == "" || a == b {
		t.Errorf("checksum/config did not change with the config: %q, %q", a, b)
	}
	if c := checksum(mustYAML("replicaCount: 2")); c != a {
		t.Errorf("checksum/config changed without a config change: %q, %q", a, c)
	}
}

// TestRenderFailures checks the guards that turn a configuration gemproxy
// would refuse at start-up, or a pod that would be killed mid-drain, into
// a failed render.
func TestRenderFailures(t *testing.T) {
	ch := loadChart(t)
	for _, tc := range []struct {
		name, values, want string
	}{
		{"extraConfig repeats a chart key", "config: {extraConfig: 'upstream = \"https://x.example\"'}", "must not set upstream"},
		{"extraConfig sets listen", "config: {extraConfig: \"listen = ':8080'\"}", "must not set listen"},
		{"extraConfig sets a chart ttl", "config: {extraConfig: 'class.info.ttl = \"5m\"'}", "must not set class.info.ttl"},
		{"extraConfig opens [server]", "config: {extraConfig: \"[server]\\nmax_connections = 5\"}", "must not open a [class.*], [server] or [shared_store] table"},
		{"extraConfig opens [shared_store]", "config: {extraConfig: \"[shared_store]\\nurl = 's3://b'\"}", "must not open a [class.*], [server] or [shared_store] table"},
		{"bad shared store URL", "sharedStore: {url: 'https://bucket'}", "url"},
		{"versions poll without a unit", "sharedStore: {versionsPoll: '10'}", "versionsPoll"},
		{"extraConfig opens [class.info]", "config: {extraConfig: \"[ class.info ]\\nrevalidate_timeout = '5s'\"}", "must not open a [class.*], [server] or [shared_store] table"},
		{"grace too short", "terminationGracePeriodSeconds: 65", "must be larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(ch, mustYAML(tc.values))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("render error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	// And a grace period just long enough passes.
	if _, err := render(ch, mustYAML("terminationGracePeriodSeconds: 66")); err != nil {
		t.Errorf("terminationGracePeriodSeconds 66 with 5s+60s: %v", err)
	}
}

// TestSchemaRejectsBadValues checks values.schema.json through Helm's own
// validation, both directly and as `helm install` runs it.
func TestSchemaRejectsBadValues(t *testing.T) {
	ch := loadChart(t)
	if ch.Schema == nil {
		t.Fatal("the chart has no values.schema.json")
	}
	defaults, err := chartutil.CoalesceValues(ch, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := chartutil.ValidateAgainstSchema(ch, defaults); err != nil {
		t.Fatalf("default values fail the schema: %v", err)
	}
	custom, err := chartutil.CoalesceValues(ch, customValues())
	if err != nil {
		t.Fatal(err)
	}
	if err := chartutil.ValidateAgainstSchema(ch, custom); err != nil {
		t.Fatalf("custom values fail the schema: %v", err)
	}

	bad := []struct{ name, values, want string }{
		{"replicaCount as a word", `replicaCount: "three"`, "replicaCount"},
		{"unknown top-level key", `replicas: 3`, "replicas"},
		{"unknown config key", `config: {upstreamURL: "https://x.example"}`, "upstreamURL"},
		{"bad log level", `config: {logLevel: verbose}`, "logLevel"},
		{"bad log format", `config: {logFormat: xml}`, "logFormat"},
		{"duration without unit", `config: {negativeTtl: "60"}`, "negativeTtl"},
		{"duration as words", `config: {ttl: {info: "1 minute"}}`, "info"},
		{"size with a decimal unit", `config: {maxSize: 10GB}`, "maxSize"},
		{"upstream without scheme", `config: {upstream: rubygems.org}`, "upstream"},
		{"upstream with credentials", `config: {upstream: "https://u:p@gems.example"}`, "upstream"},
		{"offline as a string", `config: {offline: "yes"}`, "offline"},
		{"zero drain timeout", `config: {drainTimeoutSeconds: 0}`, "drainTimeoutSeconds"},
		{"bad service type", `service: {type: External}`, "type"},
		{"port out of range", `service: {port: 70000}`, "port"},
		{"bad session affinity", `service: {sessionAffinity: Cookie}`, "sessionAffinity"},
		{"bad pull policy", `image: {pullPolicy: Sometimes}`, "pullPolicy"},
		{"bad PDB percentage", `podDisruptionBudget: {maxUnavailable: "half"}`, "maxUnavailable"},
		{"probe path is not a value", `livenessProbe: {path: /}`, "path"},
		{"bad retention policy", `persistence: {retentionPolicy: {whenDeleted: Keep}}`, "whenDeleted"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			vals, err := chartutil.CoalesceValues(ch, mustYAML(tc.values))
			if err != nil {
				t.Fatal(err)
			}
			err = chartutil.ValidateAgainstSchema(ch, vals)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ValidateAgainstSchema error = %v, want one naming %q", err, tc.want)
			}
			// The install path (ToRenderValues) validates too.
			if _, err := renderValues(ch, mustYAML(tc.values)); err == nil {
				t.Errorf("ToRenderValues accepted %s", tc.values)
			}
		})
	}
}

// TestSchemaCoversEveryValue keeps values.yaml and values.schema.json in
// step: every key of values.yaml, at every level the schema describes, is
// declared in the schema.
func TestSchemaCoversEveryValue(t *testing.T) {
	ch := loadChart(t)
	var schema map[string]any
	if err := yaml.Unmarshal(ch.Schema, &schema); err != nil {
		t.Fatal(err)
	}
	var missing []string
	var walk func(prefix string, vals map[string]any, s map[string]any)
	walk = func(prefix string, vals map[string]any, s map[string]any) {
		props, _ := s["properties"].(map[string]any)
		for k, v := range vals {
			ps, ok := props[k].(map[string]any)
			if !ok {
				if _, free := s["additionalProperties"].(map[string]any); !free && props != nil {
					missing = append(missing, prefix+k)
				}
				continue
			}
			if sub, isMap := v.(map[string]any); isMap {
				walk(prefix+k+".", sub, ps)
			}
		}
	}
	walk("", ch.Values, schema)
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("values.yaml keys not in values.schema.json: %v", missing)
	}
}

// TestPrintDefaultConfig shows the default config.toml under go test -v.
func TestPrintDefaultConfig(t *testing.T) {
	m := decodeAll(t, mustRender(t, nil))
	t.Logf("rendered config.toml:\n%s", m.configMaps[0].Data["config.toml"])
}

// TestRenderedConfigAcceptedByGemproxy builds gemproxy from the parent
// module and starts it on each rendered config.toml: the real loader, not
// the key list above, decides whether the chart's config is valid. It only
// listens on loopback and sends no upstream request. Skipped with -short,
// or when the parent module cannot be built (its own tests report that).
func TestRenderedConfigAcceptedByGemproxy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs gemproxy")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if mod, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil || !strings.Contains(string(mod), "module github.com/gemproxy/gemproxy\n") {
		t.Skipf("%s is not the gemproxy module", root)
	}
	bin := filepath.Join(t.TempDir(), "gemproxy")
	build := exec.Command(goBin, "build", "-o", bin, "./cmd/gemproxy")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Skipf("cannot build gemproxy: %v\n%s", err, out)
	}

	custom := customValues()
	// Loopback, so that nothing could ever reach out of the machine.
	custom["config"].(map[string]any)["upstream"] = "http://127.0.0.1:9/base"
	for _, tc := range []struct {
		name string
		vals map[string]any
	}{{"defaults", nil}, {"custom", custom}} {
		t.Run(tc.name, func(t *testing.T) {
			m := decodeAll(t, mustRender(t, tc.vals))
			dir := t.TempDir()
			cfgPath := filepath.Join(dir, "config.toml")
			if err := os.WriteFile(cfgPath, []byte(m.configMaps[0].Data["config.toml"]), 0o600); err != nil {
				t.Fatal(err)
			}
			// listen and data_dir are the pod's; flags move them here.
			cmd := exec.Command(bin, "serve", "--config", cfgPath,
				"--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--log-format", "text")
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "GEMPROXY_") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			log := &lockedLog{}
			addr := make(chan string, 1)
			go func() {
				sc := bufio.NewScanner(stderr)
				re := regexp.MustCompile(`msg=listening addr=(\S+)`)
				for sc.Scan() {
					log.add(sc.Text())
					if mm := re.FindStringSubmatch(sc.Text()); mm != nil {
						addr <- mm[1]
					}
				}
				exited <- cmd.Wait()
			}()
			// A no-op once it has exited.
			defer func() { _ = cmd.Process.Kill() }()

			select {
			case a := <-addr:
				resp, err := http.Get("http://" + a + "/readyz")
				if err != nil {
					t.Fatalf("GET /readyz: %v", err)
				}
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("GET /readyz = %d, want 200", resp.StatusCode)
				}
			case err := <-exited:
				t.Fatalf("gemproxy refused the rendered config (%v):\n%s\nconfig.toml:\n%s", err, log.String(), m.configMaps[0].Data["config.toml"])
			case <-time.After(30 * time.Second):
				t.Fatalf("gemproxy did not start within 30s:\n%s", log.String())
			}
			// The second signal skips shutdown_grace.
			_ = cmd.Process.Signal(syscall.SIGTERM)
			time.Sleep(100 * time.Millisecond)
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-exited:
				if err != nil {
					t.Errorf("gemproxy exited with %v:\n%s", err, log.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("gemproxy did not stop within 30s of SIGTERM:\n%s", log.String())
			}
		})
	}
}

// lockedLog collects a child's log lines from one goroutine for another.
type lockedLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lockedLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// TestLongNames checks that a long name still gives valid object names and
// a controller-revision-hash label (StatefulSet name + 11 characters) that
// fits in 63 characters.
func TestLongNames(t *testing.T) {
	long := strings.Repeat("a", 70)
	m := decodeAll(t, mustRender(t, map[string]any{"fullnameOverride": long}))
	for _, o := range m.all {
		if errs := validation.IsDNS1035Label(o.meta.Name); o.kind == "Service" && len(errs) > 0 {
			t.Errorf("Service name %q: %v", o.meta.Name, errs)
		}
	}
	if n := len(m.statefulSets[0].Name); n+11 > 63 {
		t.Errorf("StatefulSet name has %d characters: its controller-revision-hash label would exceed 63", n)
	}
}
