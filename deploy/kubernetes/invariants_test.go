package kubernetes

import (
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// stateDir is the only host path the agent may write: its read positions.
const stateDir = "/var/lib/leitstand"

// podLogDir is what makes root necessary for the agent.
const podLogDir = "/var/log/pods"

// forEachContainer runs fn for every container of every workload of every
// overlay, as a subtest.
func forEachContainer(t *testing.T, fn func(t *testing.T, b *bundle, w workload, c *corev1.Container)) {
	for _, overlay := range overlays {
		b := render(t, overlay)
		ws := workloads(b)
		if len(ws) != 2 {
			t.Errorf("overlays/%s renders %d workloads, want the agent DaemonSet and the aggregator StatefulSet", overlay, len(ws))
		}
		for _, w := range ws {
			cs := append(append([]corev1.Container(nil), w.pod.Spec.InitContainers...), w.pod.Spec.Containers...)
			for i := range cs {
				c := &cs[i]
				t.Run(overlay+"/"+w.name+"/"+c.Name, func(t *testing.T) { fn(t, b, w, c) })
			}
		}
	}
}

// TestHardening: every container has requests, limits and probes, and the
// hardened securityContext; root only for the agent, which reads pod logs.
func TestHardening(t *testing.T) {
	forEachContainer(t, func(t *testing.T, b *bundle, w workload, c *corev1.Container) {
		pod := &w.pod.Spec
		if pod.HostNetwork || pod.HostPID || pod.HostIPC {
			t.Errorf("uses the host's network, PID or IPC namespace")
		}
		for _, cp := range c.Ports {
			if cp.HostPort != 0 {
				t.Errorf("port %s has hostPort %d", cp.Name, cp.HostPort)
			}
		}

		sc := c.SecurityContext
		if sc == nil {
			t.Fatal("no securityContext")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Error("allowPrivilegeEscalation must be false")
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Error("privileged")
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Error("readOnlyRootFilesystem must be true")
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Error("capabilities must drop ALL")
		} else if len(sc.Capabilities.Add) > 0 {
			t.Errorf("adds capabilities %v", sc.Capabilities.Add)
		}
		seccomp := sc.SeccompProfile
		if seccomp == nil && pod.SecurityContext != nil {
			seccomp = pod.SecurityContext.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Error("seccompProfile must be RuntimeDefault")
		}

		// The user: the container's setting wins over the pod's.
		var uid *int64
		var nonRoot *bool
		if pod.SecurityContext != nil {
			uid, nonRoot = pod.SecurityContext.RunAsUser, pod.SecurityContext.RunAsNonRoot
		}
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
		if sc.RunAsNonRoot != nil {
			nonRoot = sc.RunAsNonRoot
		}
		switch {
		case uid != nil && *uid == 0:
			// Root only where pod log files make it necessary.
			m, v, ok := mountFor(w, c, podLogDir)
			if w.kind != "DaemonSet" || !ok || v.HostPath == nil || m.MountPath != podLogDir || !m.ReadOnly {
				t.Errorf("runs as root without reading %s from the host (read-only): only the node agent may", podLogDir)
			}
		case uid == nil || nonRoot == nil || !*nonRoot:
			t.Error("must set runAsNonRoot: true and a fixed runAsUser (or run as root only for pod logs)")
		}

		// Requests and limits for CPU and memory, requests within limits.
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, okReq := c.Resources.Requests[r]
			lim, okLim := c.Resources.Limits[r]
			if !okReq || !okLim {
				t.Errorf("%s needs a request and a limit", r)
				continue
			}
			if req.Cmp(lim) > 0 {
				t.Errorf("%s request %s is above its limit %s", r, req.String(), lim.String())
			}
		}
		// GOMEMLIMIT below the memory limit, so the GC works before the OOM
		// killer does.
		var memLimit string
		for _, e := range c.Env {
			if e.Name == "GOMEMLIMIT" {
				memLimit = e.Value
			}
		}
		if memLimit == "" {
			t.Error("no GOMEMLIMIT")
		} else if lim := c.Resources.Limits[corev1.ResourceMemory]; parseGoMemLimit(t, memLimit) >= lim.Value() {
			t.Errorf("GOMEMLIMIT %s is not below the memory limit %s", memLimit, lim.String())
		}

		// Probes on the daemon's health endpoints.
		if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Error("livenessProbe must GET /healthz")
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Error("readinessProbe must GET /readyz")
		}

		// A pinned image.
		img := c.Image
		if i := strings.LastIndex(img, "/"); i >= 0 {
			img = img[i+1:]
		}
		if !strings.Contains(img, ":") && !strings.Contains(img, "@") || strings.HasSuffix(img, ":latest") {
			t.Errorf("image %q must carry a tag other than latest, or a digest", c.Image)
		}
		if c.ImagePullPolicy != corev1.PullIfNotPresent {
			t.Errorf("imagePullPolicy %q, want IfNotPresent", c.ImagePullPolicy)
		}

		// Secrets as mounted files only.
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				t.Errorf("env %s comes from a Secret: mount it as a file (*_file keys)", e.Name)
			}
		}
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil {
				t.Errorf("envFrom Secret %s: mount it as a file (*_file keys)", e.SecretRef.Name)
			}
		}

		// Host paths are read-only, except the agent's state directory.
		for _, m := range c.VolumeMounts {
			_, v, ok := mountFor(w, c, m.MountPath)
			if !ok {
				t.Errorf("mount %s names no volume", m.MountPath)
				continue
			}
			if v.HostPath == nil {
				continue
			}
			if m.SubPath != "" {
				t.Errorf("hostPath mount %s uses subPath", m.MountPath)
			}
			if m.MountPath == stateDir && v.HostPath.Path == stateDir {
				if v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathDirectoryOrCreate {
					t.Errorf("state directory %s must be a hostPath of type DirectoryOrCreate", stateDir)
				}
				continue
			}
			if !m.ReadOnly {
				t.Errorf("hostPath %s is mounted writable at %s: only %s may be", v.HostPath.Path, m.MountPath, stateDir)
			}
		}
	})
}

// TestPorts: every Service port, NetworkPolicy ingress port, container
// port and probe agrees with a listener in the daemon's config.
func TestPorts(t *testing.T) {
	for _, overlay := range overlays {
		b := render(t, overlay)
		services := all[corev1.Service](b)
		policies := all[networkingv1.NetworkPolicy](b)
		for _, w := range workloads(b) {
			c := &w.pod.Spec.Containers[0]
			t.Run(overlay+"/"+w.name, func(t *testing.T) {
				_, _, cfg := containerConfig(t, b, w, c)
				listening := map[port]listener{}
				for _, l := range cfg.listeners(t) {
					if prev, dup := listening[l.port]; dup {
						t.Errorf("%s and %s both listen on %s", prev.what, l.what, l.port)
					}
					listening[l.port] = l
				}

				// Container ports: exactly the listeners, none on loopback.
				declared := map[port]string{}
				for _, cp := range c.Ports {
					p, _ := containerPort(c, intstr.FromString(cp.Name), cp.Protocol)
					declared[p] = cp.Name
					l, ok := listening[p]
					switch {
					case !ok:
						t.Errorf("container port %s (%s) has no listener in the config", cp.Name, p)
					case isLoopback(l.host):
						t.Errorf("container port %s (%s): the config's %s listens on loopback %s", cp.Name, p, l.what, l.host)
					}
				}
				for p, l := range listening {
					if _, ok := declared[p]; !ok && !isLoopback(l.host) {
						t.Errorf("the config's %s listens on %s, which no container port declares", l.what, p)
					}
				}

				// Services that select the workload target listeners.
				for _, s := range services {
					if !w.selectedBy(s.Spec.Selector) {
						continue
					}
					for _, sp := range s.Spec.Ports {
						target := sp.TargetPort
						if target.Type == intstr.Int && target.IntVal == 0 {
							target = intstr.FromInt32(sp.Port)
						}
						p, ok := containerPort(c, target, sp.Protocol)
						if !ok {
							t.Errorf("Service %s port %s targets %s/%s, which %s has no container port for", s.Name, sp.Name, target.String(), sp.Protocol, w)
							continue
						}
						if _, ok := listening[p]; !ok {
							t.Errorf("Service %s port %s reaches %s, where the config has no listener", s.Name, sp.Name, p)
						}
					}
				}

				// NetworkPolicy ingress: exactly the listeners.
				var np *networkingv1.NetworkPolicy
				for _, p := range policies {
					if w.selectedBy(p.Spec.PodSelector.MatchLabels) {
						if np != nil {
							t.Errorf("NetworkPolicies %s and %s both select %s", np.Name, p.Name, w)
						}
						np = p
					}
				}
				if np == nil {
					t.Fatalf("no NetworkPolicy selects %s", w)
				}
				if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
					t.Errorf("NetworkPolicy %s must restrict Ingress and Egress", np.Name)
				}
				admitted := map[port]string{}
				for _, rule := range np.Spec.Ingress {
					if len(rule.Ports) == 0 {
						t.Errorf("NetworkPolicy %s admits every port", np.Name)
					}
					for _, pp := range rule.Ports {
						p, ok := policyPort(c, pp)
						if !ok {
							t.Errorf("NetworkPolicy %s admits %s, which is no container port", np.Name, pp.Port)
							continue
						}
						admitted[p] = np.Name
					}
				}
				want := map[port]string{}
				for p, l := range listening {
					if !isLoopback(l.host) {
						want[p] = l.what
					}
				}
				if got, exp := sortedPorts(admitted), sortedPorts(want); !slices.Equal(got, exp) {
					t.Errorf("NetworkPolicy %s admits %v, the config listens on %v", np.Name, got, exp)
				}

				// Probes reach the HTTP listener, over HTTPS where it has TLS.
				for name, pr := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
					if pr == nil {
						continue
					}
					if pr.HTTPGet == nil {
						t.Errorf("%s probe has no httpGet", name)
						continue
					}
					p, ok := containerPort(c, pr.HTTPGet.Port, corev1.ProtocolTCP)
					l := listening[p]
					if !ok || l.what != "http" {
						t.Errorf("%s probe port %s is not the HTTP listener", name, pr.HTTPGet.Port.String())
						continue
					}
					wantScheme := corev1.URISchemeHTTP
					if l.tls {
						wantScheme = corev1.URISchemeHTTPS
					}
					scheme := pr.HTTPGet.Scheme
					if scheme == "" {
						scheme = corev1.URISchemeHTTP
					}
					if scheme != wantScheme {
						t.Errorf("%s probe uses %s, the HTTP listener speaks %s", name, scheme, wantScheme)
					}
				}
			})
		}
	}
}

func isLoopback(host string) bool {
	return host == "localhost" || strings.HasPrefix(host, "127.") || host == "::1"
}

// policyPort resolves a NetworkPolicy port (number or container port name).
func policyPort(c *corev1.Container, pp networkingv1.NetworkPolicyPort) (port, bool) {
	proto := corev1.ProtocolTCP
	if pp.Protocol != nil {
		proto = *pp.Protocol
	}
	if pp.Port == nil {
		return port{}, false
	}
	return containerPort(c, *pp.Port, proto)
}

// TestEgress: the aggregators reach only DNS, Elasticsearch and
// Alertmanager (the ports of the configured URLs); the agents only DNS, the
// aggregators' HTTP port and the Kubernetes API.
func TestEgress(t *testing.T) {
	for _, overlay := range overlays {
		b := render(t, overlay)
		var agg, agent workload
		for _, w := range workloads(b) {
			if w.sts != nil {
				agg = w
			} else {
				agent = w
			}
		}
		_, _, aggCfg := containerConfig(t, b, agg, &agg.pod.Spec.Containers[0])
		aggHTTP := aggCfg.listeners(t)[0].port

		dns := []port{{53, corev1.ProtocolUDP}, {53, corev1.ProtocolTCP}}
		wantAgg := map[port]string{}
		for _, u := range aggCfg.Alerting.Alertmanagers {
			wantAgg[port{urlPort(t, u), corev1.ProtocolTCP}] = "alertmanager"
		}
		for _, p := range dns {
			wantAgg[p] = "dns"
		}
		if aggCfg.Sinks.Elasticsearch.Enabled {
			for _, u := range aggCfg.Sinks.Elasticsearch.URLs {
				wantAgg[port{urlPort(t, u), corev1.ProtocolTCP}] = "elasticsearch"
			}
		}
		wantAgent := map[port]string{aggHTTP: "aggregator", {443, corev1.ProtocolTCP}: "kubernetes api", {6443, corev1.ProtocolTCP}: "kubernetes api"}
		for _, p := range dns {
			wantAgent[p] = "dns"
		}
		for _, tc := range []struct {
			w    workload
			want map[port]string
		}{{agg, wantAgg}, {agent, wantAgent}} {
			t.Run(overlay+"/"+tc.w.name, func(t *testing.T) {
				got := map[port]string{}
				for _, np := range all[networkingv1.NetworkPolicy](b) {
					if !tc.w.selectedBy(np.Spec.PodSelector.MatchLabels) {
						continue
					}
					for _, rule := range np.Spec.Egress {
						if len(rule.Ports) == 0 {
							t.Errorf("NetworkPolicy %s lets out every port", np.Name)
						}
						for _, pp := range rule.Ports {
							proto := corev1.ProtocolTCP
							if pp.Protocol != nil {
								proto = *pp.Protocol
							}
							if pp.Port == nil || pp.Port.Type != intstr.Int {
								t.Errorf("NetworkPolicy %s: egress ports must be numbers", np.Name)
								continue
							}
							got[port{pp.Port.IntVal, proto}] = np.Name
						}
					}
				}
				if g, w := sortedPorts(got), sortedPorts(tc.want); !slices.Equal(g, w) {
					t.Errorf("egress to %v, want exactly %v", g, w)
				}
			})
		}
	}
}

// TestConfigFiles: every file the config names is mounted (a Secret or
// ConfigMap key), every directory it writes is on a writable volume, and no
// secret value is written into a ConfigMap.
func TestConfigFiles(t *testing.T) {
	secretKeys := map[string]bool{"tokens": true, "token": true, "password": true, "api_key": true, "public_key": true, "dsn": true}
	forEachContainer(t, func(t *testing.T, b *bundle, w workload, c *corev1.Container) {
		_, data, _ := containerConfig(t, b, w, c)
		writable := func(p string) bool {
			m, v, ok := mountFor(w, c, p)
			return ok && !m.ReadOnly && v.ConfigMap == nil && v.Secret == nil && v.Projected == nil
		}
		if d := argValue(c.Args, "-data"); d == "" || !writable(d) {
			t.Errorf("-data %q is not on a writable volume", d)
		}
		walkYAML(t, data, func(p []string, value string) {
			key, _, _ := strings.Cut(p[len(p)-1], "[")
			where := strings.Join(p, ".")
			switch {
			case (strings.HasSuffix(key, "_file") || strings.HasSuffix(key, "_files")) && value != "":
				// A file, or a glob (rule_files), in a mounted Secret or
				// ConfigMap.
				m, v, ok := mountFor(w, c, value)
				if !ok || (v.Secret == nil && v.ConfigMap == nil) {
					t.Errorf("%s: %s is not in a Secret or ConfigMap volume", where, value)
					return
				}
				rel := strings.TrimPrefix(strings.TrimPrefix(value, m.MountPath), "/")
				matched := false
				for name := range volumeFiles(b, v) {
					ok, err := path.Match(rel, name)
					if err != nil {
						t.Errorf("%s: %s: %v", where, value, err)
					}
					matched = matched || ok
				}
				if !matched {
					t.Errorf("%s: %s: volume %s has no item %q", where, value, v.Name, rel)
				}
			case (key == "dir" || strings.HasSuffix(key, "_dir")) && !writable(value):
				t.Errorf("%s: %s is not on a writable volume (the root file system is read-only)", where, value)
			case secretKeys[key]:
				t.Errorf("%s is written inline: use the matching *_file key and a Secret", where)
			}
		})
	})
}

// TestShutdown: the pod's grace period covers the preStop pause and the
// daemon's own drain deadline, so SIGKILL never cuts a drain short.
func TestShutdown(t *testing.T) {
	for _, overlay := range overlays {
		b := render(t, overlay)
		for _, w := range workloads(b) {
			c := &w.pod.Spec.Containers[0]
			_, _, cfg := containerConfig(t, b, w, c)
			need := cfg.shutdownTimeout(t) + 5*time.Second
			if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
				need += time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
			}
			grace := 30 * time.Second
			if g := w.pod.Spec.TerminationGracePeriodSeconds; g != nil {
				grace = time.Duration(*g) * time.Second
			}
			if grace < need {
				t.Errorf("%s/%s: terminationGracePeriodSeconds %s < shutdown_timeout + preStop + 5s = %s", overlay, w, grace, need)
			}
		}
	}
}

// TestAgent: the DaemonSet runs on every node, with a priority class, the
// node name from the downward API and its state on the node.
func TestAgent(t *testing.T) {
	for _, overlay := range overlays {
		b := render(t, overlay)
		dss := all[appsv1.DaemonSet](b)
		if len(dss) != 1 {
			t.Fatalf("%s: %d DaemonSets", overlay, len(dss))
		}
		ds := dss[0]
		w := workload{kind: "DaemonSet", name: ds.Name, pod: &ds.Spec.Template, ds: ds}
		pod := &ds.Spec.Template.Spec
		c := &pod.Containers[0]
		everywhere := false
		for _, tol := range pod.Tolerations {
			if tol.Key == "" && tol.Operator == corev1.TolerationOpExists && tol.Effect == "" {
				everywhere = true
			}
		}
		if !everywhere {
			t.Errorf("%s: the agent must tolerate every taint (operator: Exists, no key, no effect)", overlay)
		}
		found := false
		for _, pc := range all[schedulingv1.PriorityClass](b) {
			found = found || pc.Name == pod.PriorityClassName
		}
		if pod.PriorityClassName == "" || !found {
			t.Errorf("%s: priorityClassName %q is not rendered", overlay, pod.PriorityClassName)
		}
		nodeName := false
		for _, e := range c.Env {
			if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
				nodeName = true
			}
		}
		if !nodeName {
			t.Errorf("%s: NODE_NAME must come from spec.nodeName (downward API)", overlay)
		}
		for _, want := range []struct {
			path     string
			readOnly bool
		}{{podLogDir, true}, {stateDir, false}} {
			m, v, ok := mountFor(w, c, want.path)
			if !ok || m.MountPath != want.path || v.HostPath == nil || v.HostPath.Path != want.path || m.ReadOnly != want.readOnly {
				t.Errorf("%s: %s must be the host's %s mounted with readOnly=%v", overlay, want.path, want.path, want.readOnly)
			}
		}
		if d := argValue(c.Args, "-data"); d != stateDir {
			t.Errorf("%s: agent -data %q, want the host's %s", overlay, d, stateDir)
		}
		if overlay != "single-node" {
			m, _, ok := mountFor(w, c, "/var/lib/docker/containers")
			if !ok || m.MountPath != "/var/lib/docker/containers" {
				t.Errorf("%s: Docker nodes' /var/lib/docker/containers (the targets of /var/log/pods' links) is not mounted", overlay)
			}
		}
	}
}

// TestAggregator: replicas, anti-affinity, the volume claim under the data
// directory and big enough for the spool, the headless Service, the PDB.
func TestAggregator(t *testing.T) {
	for _, overlay := range overlays {
		b := render(t, overlay)
		stss := all[appsv1.StatefulSet](b)
		if len(stss) != 1 {
			t.Fatalf("%s: %d StatefulSets", overlay, len(stss))
		}
		sts := stss[0]
		w := workload{kind: "StatefulSet", name: sts.Name, pod: &sts.Spec.Template, sts: sts}
		pod := &sts.Spec.Template.Spec
		c := &pod.Containers[0]
		replicas := int32(1)
		if sts.Spec.Replicas != nil {
			replicas = *sts.Spec.Replicas
		}
		ha := overlay != "single-node"
		switch {
		case ha && replicas < 2:
			t.Errorf("%s: %d aggregator replica(s), want at least 2", overlay, replicas)
		case !ha && replicas != 1:
			t.Errorf("%s: %d aggregator replicas, want 1", overlay, replicas)
		}
		if replicas > 1 {
			aa := pod.Affinity
			if aa == nil || aa.PodAntiAffinity == nil {
				t.Errorf("%s: %d replicas without pod anti-affinity", overlay, replicas)
			} else {
				terms := aa.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
				for _, p := range aa.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
					terms = append(terms, p.PodAffinityTerm)
				}
				ok := false
				for _, term := range terms {
					if term.TopologyKey == "kubernetes.io/hostname" && term.LabelSelector != nil && w.selectedBy(term.LabelSelector.MatchLabels) {
						ok = true
					}
				}
				if !ok {
					t.Errorf("%s: the anti-affinity does not keep aggregators on different nodes", overlay)
				}
			}
		}
		if pod.SecurityContext == nil || pod.SecurityContext.RunAsUser == nil || *pod.SecurityContext.RunAsUser == 0 || pod.SecurityContext.FSGroup == nil {
			t.Errorf("%s: the aggregator needs a fixed non-root runAsUser and an fsGroup for its volume", overlay)
		}

		// The data directory is a volume claim of each replica.
		data := argValue(c.Args, "-data")
		m, _, _ := mountFor(w, c, data)
		var claim *corev1.PersistentVolumeClaim
		for i := range sts.Spec.VolumeClaimTemplates {
			if sts.Spec.VolumeClaimTemplates[i].Name == m.Name {
				claim = &sts.Spec.VolumeClaimTemplates[i]
			}
		}
		if claim == nil {
			t.Fatalf("%s: -data %s is not on a volumeClaimTemplate", overlay, data)
		}
		storage := claim.Spec.Resources.Requests[corev1.ResourceStorage]
		_, _, cfg := containerConfig(t, b, w, c)
		// The spool and the TSDB share the volume: both capped, together
		// below its size.
		var used int64
		if cfg.Sinks.Elasticsearch.Enabled {
			spool := int64(10 << 30)
			if cfg.Spool.MaxBytes != "" {
				spool = parseByteSize(t, cfg.Spool.MaxBytes)
			}
			used += spool
		}
		if cfg.Rules.Datasource == "" || cfg.Rules.Datasource == "embedded" {
			var tsdb int64
			if cfg.Rules.TSDB.RetentionSize != "" {
				tsdb = parseByteSize(t, cfg.Rules.TSDB.RetentionSize)
			}
			if tsdb == 0 {
				t.Errorf("%s: rules.tsdb.retention_size is not set: the TSDB would grow until the %s volume is full", overlay, storage.String())
			}
			used += tsdb
		}
		if used >= storage.Value() {
			t.Errorf("%s: spool.max_bytes %s and rules.tsdb.retention_size %s do not fit the %s volume",
				overlay, cfg.Spool.MaxBytes, cfg.Rules.TSDB.RetentionSize, storage.String())
		}

		// The governing Service is headless and selects the replicas.
		headless := false
		for _, s := range all[corev1.Service](b) {
			if s.Name == sts.Spec.ServiceName && s.Spec.ClusterIP == corev1.ClusterIPNone && w.selectedBy(s.Spec.Selector) {
				headless = true
			}
		}
		if !headless {
			t.Errorf("%s: serviceName %q is no rendered headless Service selecting the aggregators", overlay, sts.Spec.ServiceName)
		}

		pdbs := all[policyv1.PodDisruptionBudget](b)
		switch {
		case ha && (len(pdbs) != 1 || pdbs[0].Spec.Selector == nil || !w.selectedBy(pdbs[0].Spec.Selector.MatchLabels)):
			t.Errorf("%s: want one PodDisruptionBudget for the aggregators, have %d", overlay, len(pdbs))
		case ha && pdbs[0].Spec.MaxUnavailable != nil && pdbs[0].Spec.MaxUnavailable.IntValue() >= int(replicas):
			t.Errorf("%s: the PodDisruptionBudget lets every aggregator go", overlay)
		case !ha && len(pdbs) != 0:
			t.Errorf("%s: a single aggregator must have no PodDisruptionBudget (it would block every drain)", overlay)
		}
	}
}

// TestRBAC: the agent's ClusterRole reads pods and namespaces and nothing
// else, bound to the agent's ServiceAccount only; the aggregator has no API
// access and no token.
func TestRBAC(t *testing.T) {
	for _, overlay := range overlays {
		b := render(t, overlay)
		if n := len(all[rbacv1.Role](b)) + len(all[rbacv1.RoleBinding](b)); n != 0 {
			t.Errorf("%s: %d Roles/RoleBindings, want none", overlay, n)
		}
		roles := all[rbacv1.ClusterRole](b)
		if len(roles) != 1 {
			t.Fatalf("%s: %d ClusterRoles, want 1", overlay, len(roles))
		}
		for _, r := range roles[0].Rules {
			if !slices.Equal(r.APIGroups, []string{""}) || len(r.NonResourceURLs) > 0 || len(r.ResourceNames) > 0 {
				t.Errorf("%s: rule %+v reaches beyond the core API group", overlay, r)
			}
			for _, res := range r.Resources {
				if res != "pods" && res != "namespaces" {
					t.Errorf("%s: ClusterRole grants %s", overlay, res)
				}
			}
			for _, v := range r.Verbs {
				if v != "get" && v != "list" && v != "watch" {
					t.Errorf("%s: ClusterRole grants %s", overlay, v)
				}
			}
		}
		var agentSA, aggSA string
		for _, w := range workloads(b) {
			if w.ds != nil {
				agentSA = w.pod.Spec.ServiceAccountName
			} else {
				aggSA = w.pod.Spec.ServiceAccountName
				if a := w.pod.Spec.AutomountServiceAccountToken; a == nil || *a {
					t.Errorf("%s: the aggregator mounts a service account token it does not need", overlay)
				}
			}
		}
		bindings := all[rbacv1.ClusterRoleBinding](b)
		if len(bindings) != 1 {
			t.Fatalf("%s: %d ClusterRoleBindings, want 1", overlay, len(bindings))
		}
		crb := bindings[0]
		if crb.RoleRef.Kind != "ClusterRole" || crb.RoleRef.Name != roles[0].Name {
			t.Errorf("%s: the binding refers to %s %s", overlay, crb.RoleRef.Kind, crb.RoleRef.Name)
		}
		if len(crb.Subjects) != 1 || crb.Subjects[0].Kind != "ServiceAccount" || crb.Subjects[0].Name != agentSA || crb.Subjects[0].Namespace != namespace {
			t.Errorf("%s: the binding's subjects %+v, want only ServiceAccount %s/%s", overlay, crb.Subjects, namespace, agentSA)
		}
		if agentSA == aggSA {
			t.Errorf("%s: agent and aggregator share ServiceAccount %s", overlay, agentSA)
		}
		sas := map[string]bool{}
		for _, sa := range all[corev1.ServiceAccount](b) {
			sas[sa.Name] = true
		}
		if !sas[agentSA] || !sas[aggSA] {
			t.Errorf("%s: ServiceAccounts %q and %q must be rendered", overlay, agentSA, aggSA)
		}
	}
}

// TestRulesConfigMap: the rules ConfigMap holds the shipped rule files,
// mounted into the aggregators.
func TestRulesConfigMap(t *testing.T) {
	shipped, _ := filepath.Glob("../../rules/shipped/*.rules.yml")
	if len(shipped) == 0 {
		t.Skip("no shipped rule files yet")
	}
	for _, overlay := range overlays {
		b := render(t, overlay)
		sts := all[appsv1.StatefulSet](b)[0]
		var cm *corev1.ConfigMap
		for _, v := range sts.Spec.Template.Spec.Volumes {
			if v.ConfigMap != nil && strings.HasPrefix(v.ConfigMap.Name, "leitstand-rules") {
				cm = configMap(b, v.ConfigMap.Name)
			}
		}
		if cm == nil {
			t.Fatalf("%s: no rules ConfigMap mounted into the aggregators", overlay)
		}
		// Every file of the ConfigMap is one the aggregators evaluate.
		c := &sts.Spec.Template.Spec.Containers[0]
		w := workload{kind: "StatefulSet", name: sts.Name, pod: &sts.Spec.Template, sts: sts}
		_, _, cfg := containerConfig(t, b, w, c)
		for name := range cm.Data {
			used := false
			for _, g := range cfg.Rules.RuleFiles {
				m, v, ok := mountFor(w, c, g)
				if ok && v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
					ok, _ := path.Match(strings.TrimPrefix(strings.TrimPrefix(g, m.MountPath), "/"), name)
					used = used || ok
				}
			}
			if !used {
				t.Errorf("%s: rules ConfigMap file %s is not in the aggregators' rules.rule_files", overlay, name)
			}
		}
		if len(cm.Data) != len(shipped) {
			t.Errorf("%s: the rules ConfigMap has %d files, rules/shipped %d: list every file in base/kustomization.yaml", overlay, len(cm.Data), len(shipped))
		}
		for _, f := range shipped {
			want, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := cm.Data[filepath.Base(f)]; !ok || got != string(want) {
				t.Errorf("%s: the rules ConfigMap's %s is missing or differs from %s", overlay, filepath.Base(f), f)
			}
		}
	}
}

// TestMonitoring: the prometheus-operator objects and dashboards exist only
// where the component is used, and point at what is rendered.
func TestMonitoring(t *testing.T) {
	dashboards, _ := filepath.Glob("../grafana/dashboards/*.json")
	for _, overlay := range overlays {
		b := render(t, overlay)
		sms, pms, prs := all[monv1.ServiceMonitor](b), all[monv1.PodMonitor](b), all[monv1.PrometheusRule](b)
		var dashCMs []*corev1.ConfigMap
		for _, cm := range all[corev1.ConfigMap](b) {
			if cm.Labels["grafana_dashboard"] == "1" {
				dashCMs = append(dashCMs, cm)
			}
		}
		if !strings.HasSuffix(overlay, "-monitoring") {
			if len(sms)+len(pms)+len(prs)+len(dashCMs) != 0 {
				t.Errorf("%s: monitoring objects without the monitoring component", overlay)
			}
			continue
		}
		var agg, agent workload
		for _, w := range workloads(b) {
			if w.sts != nil {
				agg = w
			} else {
				agent = w
			}
		}
		_, _, cfg := containerConfig(t, b, agg, &agg.pod.Spec.Containers[0])
		tls := cfg.listeners(t)[0].tls

		if len(sms) != 1 {
			t.Fatalf("%s: %d ServiceMonitors", overlay, len(sms))
		}
		sm := sms[0]
		var selected []*corev1.Service
		for _, s := range all[corev1.Service](b) {
			if labelsMatch(sm.Spec.Selector.MatchLabels, s.Labels) {
				selected = append(selected, s)
			}
		}
		if len(selected) != 1 || !agg.selectedBy(selected[0].Spec.Selector) {
			t.Fatalf("%s: the ServiceMonitor selects %d Services, want only the aggregators' HTTP Service (each replica scraped once)", overlay, len(selected))
		}
		for _, ep := range sm.Spec.Endpoints {
			ok := false
			for _, sp := range selected[0].Spec.Ports {
				ok = ok || sp.Name == ep.Port
			}
			if !ok || ep.Path != "/metrics" {
				t.Errorf("%s: ServiceMonitor endpoint %s%s is not the Service's HTTP port and /metrics", overlay, ep.Port, ep.Path)
			}
			https := ep.Scheme != nil && strings.EqualFold(string(*ep.Scheme), "https")
			if https != tls {
				t.Errorf("%s: ServiceMonitor scheme https=%v, the aggregators' HTTP TLS=%v", overlay, https, tls)
			}
			if tls && (ep.TLSConfig == nil || ep.TLSConfig.CA.Secret == nil && ep.TLSConfig.CA.ConfigMap == nil) {
				t.Errorf("%s: ServiceMonitor scrapes HTTPS without a CA to trust", overlay)
			}
		}
		if len(pms) != 1 || !agent.selectedBy(pms[0].Spec.Selector.MatchLabels) {
			t.Errorf("%s: want one PodMonitor selecting the agents", overlay)
		} else {
			for _, ep := range pms[0].Spec.PodMetricsEndpoints {
				if _, ok := containerPort(&agent.pod.Spec.Containers[0], intstr.FromString(ptrString(ep.Port)), corev1.ProtocolTCP); !ok {
					t.Errorf("%s: PodMonitor port %q is no agent container port", overlay, ptrString(ep.Port))
				}
			}
		}

		shipped, _ := filepath.Glob("../../rules/shipped/*.rules.yml")
		if len(prs) != len(shipped) {
			t.Errorf("%s: %d PrometheusRules for %d shipped rule files", overlay, len(prs), len(shipped))
		}

		if len(dashCMs) != len(dashboards) {
			t.Errorf("%s: %d dashboard ConfigMaps for %d dashboards in deploy/grafana/dashboards: list every file in components/monitoring/kustomization.yaml", overlay, len(dashCMs), len(dashboards))
		}
		byFile := map[string]string{}
		for _, cm := range dashCMs {
			if len(cm.Data) != 1 {
				t.Errorf("%s: ConfigMap %s holds %d dashboards, want 1", overlay, cm.Name, len(cm.Data))
			}
			for k, v := range cm.Data {
				byFile[k] = v
				// kubectl apply (client side) keeps the whole object in an
				// annotation limited to 256KiB.
				if len(v) > 200<<10 {
					t.Errorf("%s: dashboard %s is %d bytes: too big for client-side kubectl apply", overlay, k, len(v))
				}
			}
		}
		for _, f := range dashboards {
			want, _ := os.ReadFile(f)
			if got, ok := byFile[filepath.Base(f)]; !ok || got != string(want) {
				t.Errorf("%s: dashboard %s is missing or differs from %s", overlay, filepath.Base(f), f)
			}
		}
	}
}

func labelsMatch(sel, have map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if have[k] != v {
			return false
		}
	}
	return true
}

// urlPort is the port of an http(s) URL, explicit or by its scheme.
func urlPort(t *testing.T, raw string) int32 {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		return int32(n)
	}
	if u.Scheme == "https" {
		return 443
	}
	return 80
}

func ptrString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
