package kubernetes

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/leitstand/leitstand/internal/config"
)

// workload is a DaemonSet or StatefulSet, seen through what the tests need.
type workload struct {
	kind, name string
	pod        *corev1.PodTemplateSpec
	sts        *appsv1.StatefulSet // nil for a DaemonSet
	ds         *appsv1.DaemonSet   // nil for a StatefulSet
}

func (w workload) String() string { return w.kind + "/" + w.name }

func workloads(b *bundle) []workload {
	var out []workload
	for _, ds := range all[appsv1.DaemonSet](b) {
		out = append(out, workload{kind: "DaemonSet", name: ds.Name, pod: &ds.Spec.Template, ds: ds})
	}
	for _, sts := range all[appsv1.StatefulSet](b) {
		out = append(out, workload{kind: "StatefulSet", name: sts.Name, pod: &sts.Spec.Template, sts: sts})
	}
	return out
}

// selects tells whether a label selector (a Service's or a
// NetworkPolicy's) picks the workload's pods.
func (w workload) selectedBy(sel map[string]string) bool {
	return len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(w.pod.Labels))
}

// port is a number and protocol, e.g. 5514/UDP.
type port struct {
	number int32
	proto  corev1.Protocol
}

func (p port) String() string { return fmt.Sprintf("%d/%s", p.number, p.proto) }

func sortedPorts(set map[port]string) []string {
	var out []string
	for p := range set {
		out = append(out, p.String())
	}
	sort.Strings(out)
	return out
}

// daemonConfig is the part of leitstand's config the manifests must agree
// with. It mirrors cmd/leitstand's Config loosely (that package is main);
// `leitstand check` validates the whole file strictly.
type daemonConfig struct {
	// Role is "agent" or "aggregator" (the default when left out).
	Role            string `yaml:"role"`
	ShutdownTimeout string `yaml:"shutdown_timeout"`
	HTTP            struct {
		Listen string    `yaml:"listen"`
		TLS    tlsConfig `yaml:"tls"`
	} `yaml:"http"`
	Syslog struct {
		Enabled   *bool `yaml:"enabled"`
		Listeners []struct {
			Protocol string    `yaml:"protocol"`
			Address  string    `yaml:"address"`
			TLS      tlsConfig `yaml:"tls"`
		} `yaml:"listeners"`
	} `yaml:"syslog"`
	Ingest struct {
		MaxBodyBytes string `yaml:"max_body_bytes"`
		Auth         struct {
			TokensFile string `yaml:"tokens_file"`
		} `yaml:"auth"`
	} `yaml:"ingest"`
	Spool struct {
		MaxBytes string `yaml:"max_bytes"`
	} `yaml:"spool"`
	Rules struct {
		Datasource string   `yaml:"datasource"`
		RuleFiles  []string `yaml:"rule_files"`
		TSDB       struct {
			RetentionSize string `yaml:"retention_size"`
		} `yaml:"tsdb"`
	} `yaml:"rules"`
	Alerting struct {
		Alertmanagers []string `yaml:"alertmanagers"`
	} `yaml:"alerting"`
	Sinks struct {
		Elasticsearch struct {
			Enabled bool     `yaml:"enabled"`
			URLs    []string `yaml:"urls"`
		} `yaml:"elasticsearch"`
	} `yaml:"sinks"`
}

type tlsConfig struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// listener is a socket the daemon opens, by its config.
type listener struct {
	what string // "http", "syslog udp", …
	host string
	port port
	tls  bool
}

func (c *daemonConfig) agent() bool { return c.Role == "agent" }

// listeners lists the sockets of a config, applying the daemon's defaults
// for keys the file leaves out (which are loopback addresses, so a Service
// pointing at them fails the tests; role: agent turns syslog off).
func (c *daemonConfig) listeners(t *testing.T) []listener {
	t.Helper()
	var out []listener
	add := func(what, addr, proto string, tls bool) {
		host, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Errorf("%s listens on %q: %v", what, addr, err)
			return
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			t.Errorf("%s listens on %q: %v", what, addr, err)
			return
		}
		out = append(out, listener{what: what, host: host, port: port{int32(n), corev1.Protocol(proto)}, tls: tls})
	}
	listen := c.HTTP.Listen
	if listen == "" {
		listen = "127.0.0.1:8080"
	}
	add("http", listen, "TCP", c.HTTP.TLS.CertFile != "")
	if c.Syslog.Enabled == nil && !c.agent() || c.Syslog.Enabled != nil && *c.Syslog.Enabled {
		ls := c.Syslog.Listeners
		if ls == nil {
			add("syslog udp", "127.0.0.1:5514", "UDP", false)
			add("syslog tcp", "127.0.0.1:5514", "TCP", false)
		}
		for _, l := range ls {
			switch l.Protocol {
			case "udp":
				add("syslog udp", l.Address, "UDP", false)
			case "tcp":
				add("syslog tcp", l.Address, "TCP", false)
			case "tls":
				add("syslog tls", l.Address, "TCP", true)
			}
		}
	}
	return out
}

func (c *daemonConfig) shutdownTimeout(t *testing.T) time.Duration {
	if c.ShutdownTimeout == "" {
		return 30 * time.Second
	}
	d, err := time.ParseDuration(c.ShutdownTimeout)
	if err != nil {
		t.Fatalf("shutdown_timeout: %v", err)
	}
	return d
}

// argValue returns the value of a flag in a container's args.
func argValue(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// mountFor finds the mount a path in the container lies under, and its
// volume (a StatefulSet's volume claims count as volumes).
func mountFor(w workload, c *corev1.Container, p string) (corev1.VolumeMount, corev1.Volume, bool) {
	var best corev1.VolumeMount
	found := false
	for _, m := range c.VolumeMounts {
		if (p == m.MountPath || strings.HasPrefix(p, m.MountPath+"/")) && len(m.MountPath) > len(best.MountPath) {
			best, found = m, true
		}
	}
	if !found {
		return best, corev1.Volume{}, false
	}
	for _, v := range w.volumes() {
		if v.Name == best.Name {
			return best, v, true
		}
	}
	return best, corev1.Volume{}, false
}

// volumes are the pod's volumes and, for a StatefulSet, its claims.
func (w workload) volumes() []corev1.Volume {
	vs := append([]corev1.Volume(nil), w.pod.Spec.Volumes...)
	if w.sts != nil {
		for _, c := range w.sts.Spec.VolumeClaimTemplates {
			vs = append(vs, corev1.Volume{Name: c.Name, VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c.Name},
			}})
		}
	}
	return vs
}

// configMap returns a rendered ConfigMap by name.
func configMap(b *bundle, name string) *corev1.ConfigMap {
	for _, cm := range all[corev1.ConfigMap](b) {
		if cm.Name == name {
			return cm
		}
	}
	return nil
}

// volumeFiles lists the files a ConfigMap or Secret volume shows, by name
// in the mount, and for a ConfigMap their content.
func volumeFiles(b *bundle, v corev1.Volume) map[string]string {
	files := map[string]string{}
	switch {
	case v.ConfigMap != nil:
		cm := configMap(b, v.ConfigMap.Name)
		if cm == nil {
			return nil
		}
		if len(v.ConfigMap.Items) == 0 {
			for k, d := range cm.Data {
				files[k] = d
			}
		}
		for _, it := range v.ConfigMap.Items {
			files[it.Path] = cm.Data[it.Key]
		}
	case v.Secret != nil:
		for _, it := range v.Secret.Items {
			files[it.Path] = ""
		}
	}
	return files
}

// containerConfig finds the container's -config file in the ConfigMap it
// is mounted from and decodes it.
func containerConfig(t *testing.T, b *bundle, w workload, c *corev1.Container) (string, string, daemonConfig) {
	t.Helper()
	p := argValue(c.Args, "-config")
	if p == "" {
		t.Fatalf("%s: container %s runs without -config", w, c.Name)
	}
	m, v, ok := mountFor(w, c, p)
	if !ok || v.ConfigMap == nil {
		t.Fatalf("%s: -config %s is not in a ConfigMap volume", w, p)
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(p, m.MountPath), "/")
	data, ok := volumeFiles(b, v)[rel]
	if !ok {
		t.Fatalf("%s: -config %s: ConfigMap %s has no %s", w, p, v.ConfigMap.Name, rel)
	}
	var cfg daemonConfig
	if err := yaml.Unmarshal([]byte(data), &cfg); err != nil {
		t.Fatalf("%s: %s: %v", w, p, err)
	}
	return p, data, cfg
}

// containerPort resolves a Service's targetPort or a probe's port (a name
// or a number) to the container port it means.
func containerPort(c *corev1.Container, target intstr.IntOrString, proto corev1.Protocol) (port, bool) {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, cp := range c.Ports {
		p := cp.Protocol
		if p == "" {
			p = corev1.ProtocolTCP
		}
		if p != proto {
			continue
		}
		if (target.Type == intstr.String && cp.Name == target.StrVal) || (target.Type == intstr.Int && cp.ContainerPort == target.IntVal) {
			return port{cp.ContainerPort, p}, true
		}
	}
	return port{}, false
}

// walkYAML calls fn for every key path and scalar value of a YAML document
// (list items as "key[i]").
func walkYAML(t *testing.T, data string, fn func(path []string, value string)) {
	t.Helper()
	var root any
	if err := yaml.Unmarshal([]byte(data), &root); err != nil {
		t.Fatal(err)
	}
	var walk func(p []string, v any)
	walk = func(p []string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(append(append([]string(nil), p...), k), e)
			}
		case []any:
			for i, e := range v {
				q := append([]string(nil), p...)
				if len(q) > 0 {
					q[len(q)-1] += fmt.Sprintf("[%d]", i)
				} else {
					q = append(q, fmt.Sprintf("[%d]", i))
				}
				walk(q, e)
			}
		case nil:
		default:
			fn(p, fmt.Sprint(v))
		}
	}
	walk(nil, root)
}

// parseByteSize reads a size as the daemon does ("6GiB").
func parseByteSize(t *testing.T, s string) int64 {
	t.Helper()
	n, err := config.ParseByteSize(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return int64(n)
}

// parseGoMemLimit reads GOMEMLIMIT (bytes with an optional B, KiB, MiB,
// GiB or TiB suffix).
func parseGoMemLimit(t *testing.T, s string) int64 {
	t.Helper()
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = v, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("GOMEMLIMIT %q: %v", s, err)
	}
	return n * mult
}
