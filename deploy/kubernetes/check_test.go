package kubernetes

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/leitstand/leitstand/collector/httpin"
	"github.com/leitstand/leitstand/collector/podlog"
	"github.com/leitstand/leitstand/collector/sink/file"
	"github.com/leitstand/leitstand/collector/sink/forward"
	"github.com/leitstand/leitstand/internal/config"
	"github.com/leitstand/leitstand/internal/peers"
)

// testVersion is stamped into the binary the way the Dockerfile stamps the
// release version.
const testVersion = "k8s-manifest-test"

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// leitstandBinary builds cmd/leitstand once per test run with the
// Dockerfile's flags (CGO_ENABLED=0, version by -ldflags).
func leitstandBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "leitstand-k8s-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "leitstand")
		// -trimpath is left out: it changes every package's build cache
		// key, so the build could not reuse what `go build ./...` cached.
		// It changes no linking (TestContainerfile checks the Dockerfile
		// uses it).
		cmd := exec.Command("go", "build", "-buildvcs=false",
			"-ldflags", "-s -w -X main.version="+testVersion, "-o", binPath, "./cmd/leitstand")
		cmd.Dir = filepath.Join("..", "..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/leitstand: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func cleanupBinary() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// pki is a CA and a server certificate it signed, for the TLS Secrets.
type pki struct{ caCert, serverCert, serverKey []byte }

var (
	pkiOnce sync.Once
	testPKI pki
	pkiErr  error
)

func testCerts(t *testing.T) pki {
	t.Helper()
	pkiOnce.Do(func() { testPKI, pkiErr = makePKI() })
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return testPKI
}

func makePKI() (pki, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return pki{}, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "leitstand test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return pki{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return pki{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "leitstand-aggregator.leitstand.svc"},
		DNSNames:    []string{"leitstand-aggregator.leitstand.svc", "leitstand-syslog.leitstand.svc"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return pki{}, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return pki{}, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return pki{}, err
	}
	return pki{
		caCert:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		serverCert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		serverKey:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// testToken is the bearer token of every token fixture.
const testToken = "k8s-test-token-0123456789abcdef"

// secretFixture is what the operator puts under a Secret key, for the
// tests. A key without a fixture fails: every key the manifests reference
// must be known here and documented in the README section.
func secretFixture(t *testing.T, secret, key string) []byte {
	t.Helper()
	certs := testCerts(t)
	switch key {
	case "tls.crt":
		return certs.serverCert
	case "tls.key":
		return certs.serverKey
	case "ca.crt":
		return certs.caCert
	case "hash-key":
		return []byte(hex.EncodeToString(bytes.Repeat([]byte{0x5a}, 32)) + "\n")
	case "tokens":
		return []byte("# agents and other senders\n" + testToken + "\n")
	case "agent-token", "platform-ops":
		return []byte(testToken + "\n")
	case "password":
		return []byte("fixture-password\n")
	case "public-key":
		return []byte("0123456789abcdef0123456789abcdef\n")
	}
	t.Fatalf("Secret %s key %s: no test fixture; add one here and document the key", secret, key)
	return nil
}

// tree is a container's file system view laid out under a temporary root:
// every mount with the files its ConfigMap or Secret would show.
type tree struct {
	root   string
	mounts []string // mount paths, longest first
}

// materialize lays out the container's mounts under a temporary root. The
// service account token is there when the pod mounts it.
func materialize(t *testing.T, b *bundle, w workload, c *corev1.Container) *tree {
	t.Helper()
	pod := &w.pod.Spec
	tr := &tree{root: t.TempDir()}
	for _, m := range c.VolumeMounts {
		_, v, ok := mountFor(w, c, m.MountPath)
		if !ok {
			t.Fatalf("%s: mount %s names no volume", w, m.MountPath)
		}
		dir := filepath.Join(tr.root, m.MountPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		tr.mounts = append(tr.mounts, m.MountPath)
		switch {
		case v.ConfigMap != nil:
			files := volumeFiles(b, v)
			if files == nil {
				t.Fatalf("%s: ConfigMap %s is not rendered", w, v.ConfigMap.Name)
			}
			for name, data := range files {
				writeFile(t, filepath.Join(dir, name), []byte(data))
			}
		case v.Secret != nil:
			if len(v.Secret.Items) == 0 {
				t.Fatalf("%s: Secret volume %s lists no items: name the keys the daemon reads", w, v.Name)
			}
			for _, it := range v.Secret.Items {
				writeFile(t, filepath.Join(dir, it.Path), secretFixture(t, v.Secret.SecretName, it.Key))
			}
		}
	}
	if a := pod.AutomountServiceAccountToken; a == nil || *a {
		dir := filepath.Join(tr.root, podlog.ServiceAccountDir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "token"), []byte("fixture-service-account-token"))
		writeFile(t, filepath.Join(dir, "ca.crt"), testCerts(t).caCert)
		writeFile(t, filepath.Join(dir, "namespace"), []byte(namespace))
		tr.mounts = append(tr.mounts, podlog.ServiceAccountDir)
	}
	sort.Slice(tr.mounts, func(i, j int) bool { return len(tr.mounts[i]) > len(tr.mounts[j]) })
	return tr
}

// path maps a path in the container to the temporary tree.
func (tr *tree) path(p string) string { return filepath.Join(tr.root, p) }

// rewrite maps every path under a mount in a config text to the tree: a
// mount's own path too (podlog.roots: [/var/log/pods]) where a YAML value
// ends with it.
func (tr *tree) rewrite(text string) string {
	var pairs []string
	for _, m := range tr.mounts {
		pairs = append(pairs, m+"/", tr.path(m)+"/")
		for _, end := range []string{"\n", "]", ",", " ", "}", `"`, "'"} {
			pairs = append(pairs, m+end, tr.path(m)+end)
		}
	}
	return strings.NewReplacer(pairs...).Replace(text)
}

// podConfig is a container's config text as the daemon in the tree must
// read it: the in-cluster defaults the file leaves out written in (the
// service account token and CA of podlog.kubernetes, which the kubelet
// mounts where the daemon looks by default), then every path mapped to the
// tree.
func podConfig(t *testing.T, tr *tree, w workload, text string) string {
	t.Helper()
	if a := w.pod.Spec.AutomountServiceAccountToken; a == nil || *a {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
			t.Fatal(err)
		}
		if len(doc.Content) == 1 {
			if pl := mappingValue(doc.Content[0], "podlog"); pl != nil && pl.Kind == yaml.MappingNode {
				k := mappingValue(pl, "kubernetes")
				if k == nil {
					k = &yaml.Node{Kind: yaml.MappingNode}
					pl.Content = append(pl.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "kubernetes"}, k)
				}
				for key, def := range map[string]string{"token_file": podlog.ServiceAccountDir + "/token", "ca_file": podlog.ServiceAccountDir + "/ca.crt"} {
					if mappingValue(k, key) == nil {
						k.Content = append(k.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, &yaml.Node{Kind: yaml.ScalarNode, Value: def})
					}
				}
				out, err := yaml.Marshal(&doc)
				if err != nil {
					t.Fatal(err)
				}
				text = string(out)
			}
		}
	}
	return tr.rewrite(text)
}

// mappingValue is the value of key in a YAML mapping, or nil.
func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// kubeAPIUnused is the Kubernetes API address of pods whose test answers
// no API calls: loopback, so nothing could leave the machine if something
// dialled it.
const kubeAPIUnused = "127.0.0.1:443"

// downwardEnv is the container's environment as the kubelet would set it
// (downward API values faked), with the kubernetes Service's address that
// the kubelet puts into every pod: kubeAPI, a loopback host:port.
func downwardEnv(w workload, c *corev1.Container, kubeAPI string) []string {
	host, port, _ := net.SplitHostPort(kubeAPI)
	env := []string{"PATH=" + os.Getenv("PATH"), "KUBERNETES_SERVICE_HOST=" + host, "KUBERNETES_SERVICE_PORT=" + port}
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			v = map[string]string{
				"metadata.name": w.name + "-0", "metadata.namespace": namespace, "spec.nodeName": testNode,
			}[e.ValueFrom.FieldRef.FieldPath]
		}
		env = append(env, e.Name+"="+v)
	}
	return env
}

// testNode is the node name the downward API gives the pods.
const testNode = "node-1"

// TestLeitstandCheck runs `leitstand check` on the config each container
// runs with, its Secrets and ConfigMaps laid out as the pod would see them:
// the container's own args, with check for run.
func TestLeitstandCheck(t *testing.T) {
	bin := leitstandBinary(t)
	forEachContainer(t, func(t *testing.T, b *bundle, w workload, c *corev1.Container) {
		args := append([]string{"check"}, containerFlags(t, b, w, c)...)
		cmd := exec.Command(bin, args...)
		cmd.Env = downwardEnv(w, c, kubeAPIUnused)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("leitstand %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
		if !strings.HasPrefix(stdout.String(), "config OK") {
			t.Errorf("leitstand check printed %q", stdout.String())
		}
		// The daemon's own view of the agent: role agent, forwarding is
		// its only sink (the role turned the file sink off).
		if _, sinks, _ := strings.Cut(stdout.String(), "; sinks: "); w.ds != nil &&
			(!strings.Contains(stdout.String(), "): agent, ") || !strings.HasPrefix(sinks, "forward (") || strings.Contains(sinks, ", ")) {
			t.Errorf("the agent is not an agent that only forwards: %q", stdout.String())
		}
		t.Log(strings.TrimSpace(stdout.String()))
	})
}

// containerFlags lays out the container's files (materialize), points its
// config at them and returns its flags (-config, -data) for the tree.
func containerFlags(t *testing.T, b *bundle, w workload, c *corev1.Container) []string {
	t.Helper()
	tr := materialize(t, b, w, c)
	cfgPath := argValue(c.Args, "-config")
	raw, err := os.ReadFile(tr.path(cfgPath))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, tr.path(cfgPath), []byte(podConfig(t, tr, w, string(raw))))
	if len(c.Args) == 0 || c.Args[0] != "run" {
		t.Fatalf("args %v do not start with run", c.Args)
	}
	var args []string
	for i := 1; i < len(c.Args); i++ {
		a := c.Args[i]
		if (a == "-config" || a == "-data") && i+1 < len(c.Args) {
			args = append(args, a, tr.path(c.Args[i+1]))
			i++
			continue
		}
		args = append(args, a)
	}
	return args
}

// TestAlertmanagerConfig: the aggregators' role registry generates an
// Alertmanager configuration (`leitstand alertmanager-config`) that
// Alertmanager's own checker accepts.
func TestAlertmanagerConfig(t *testing.T) {
	bin := leitstandBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	amtool, err := peers.Bin(ctx, "amtool")
	peers.Check(t, err)
	for _, overlay := range overlays {
		b := render(t, overlay)
		for _, w := range workloads(b) {
			if w.sts == nil {
				continue
			}
			c := &w.pod.Spec.Containers[0]
			t.Run(overlay, func(t *testing.T) {
				args := append([]string{"alertmanager-config"}, containerFlags(t, b, w, c)...)
				cmd := exec.CommandContext(ctx, bin, args...)
				cmd.Env = downwardEnv(w, c, kubeAPIUnused)
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("leitstand %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
				}
				f := filepath.Join(t.TempDir(), "alertmanager.yml")
				writeFile(t, f, out)
				if res, err := exec.CommandContext(ctx, amtool, "check-config", f).CombinedOutput(); err != nil {
					t.Fatalf("amtool check-config: %v\n%s\n--- generated:\n%s", err, res, out)
				}
			})
		}
	}
}

// agentSections are the parts of the agent's config the DaemonSet must
// agree with, each decoded strictly into its package's own config type over
// the defaults role: agent reads it over (cmd/leitstand's
// AgentDefaultConfig: the pod log receiver on, the file sink off).
type agentSections struct {
	Role   string
	Podlog podlog.Config
	Sinks  struct {
		File    file.Config    `yaml:"file"`
		Forward forward.Config `yaml:"forward"`
	}
}

func decodeAgent(t *testing.T, name, text string) agentSections {
	t.Helper()
	var a agentSections
	a.Podlog = podlog.DefaultConfig()
	a.Podlog.Enabled = true
	a.Sinks.File = file.DefaultConfig()
	a.Sinks.File.Enabled = false
	a.Sinks.Forward = forward.DefaultConfig()
	var top map[string]yaml.Node
	if err := yaml.Unmarshal([]byte(text), &top); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	role := top["role"]
	a.Role = role.Value
	for key, dst := range map[string]any{"podlog": &a.Podlog, "sinks": &a.Sinks} {
		n, ok := top[key]
		if !ok {
			continue
		}
		section, err := yaml.Marshal(&n)
		if err != nil {
			t.Fatal(err)
		}
		// Lines count from the section's first key.
		if src, err := config.Decode(name+": "+key, section, dst); err != nil {
			t.Fatalf("%v", src.Annotate(err))
		}
	}
	return a
}

// secretItem finds the Secret volume and key a file in the container comes
// from.
func secretItem(w workload, c *corev1.Container, p string) (secret, key string, ok bool) {
	m, v, found := mountFor(w, c, p)
	if !found || v.Secret == nil {
		return "", "", false
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(p, m.MountPath), "/")
	for _, it := range v.Secret.Items {
		if it.Path == rel {
			return v.Secret.SecretName, it.Key, true
		}
	}
	return v.Secret.SecretName, "", false
}

// agentAndAggregator returns an overlay's two workloads.
func agentAndAggregator(t *testing.T, b *bundle) (agent, agg workload) {
	t.Helper()
	for _, w := range workloads(b) {
		if w.ds != nil {
			agent = w
		} else {
			agg = w
		}
	}
	if agent.ds == nil || agg.sts == nil {
		t.Fatalf("overlays/%s: want the agent DaemonSet and the aggregator StatefulSet", b.overlay)
	}
	return agent, agg
}

// TestAgentConfig checks the agent's config against the DaemonSet that runs
// it and the aggregators it forwards to: role: agent; the pod log roots on
// read-only host mounts and the positions on the writable state directory;
// no file sink on the node; the service account token mounted where pod
// labels are asked for; the forward URLs reaching the aggregators' HTTP
// listener through a Service port, with the scheme it speaks and the CA of
// its certificate; the forward token the agent-token key of the Secret the
// aggregators' ingest tokens come from; requests no bigger than the
// aggregators take. (`leitstand check` validates the whole file in
// TestLeitstandCheck, TestPodsBecomeReady runs it.)
func TestAgentConfig(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			b := render(t, overlay)
			agent, agg := agentAndAggregator(t, b)
			c := &agent.pod.Spec.Containers[0]
			aggC := &agg.pod.Spec.Containers[0]
			name, raw, cfg := containerConfig(t, b, agent, c)
			_, _, aggCfg := containerConfig(t, b, agg, aggC)
			if !cfg.agent() {
				t.Errorf("%s: role %q, want agent", name, cfg.Role)
			}
			a := decodeAgent(t, name, raw)

			pl := a.Podlog
			if !pl.Enabled {
				t.Errorf("%s: podlog is not enabled", name)
			}
			if len(pl.Roots) == 0 {
				t.Errorf("%s: podlog.roots is empty", name)
			}
			for _, r := range pl.Roots {
				m, v, ok := mountFor(agent, c, r)
				if !ok || v.HostPath == nil || !m.ReadOnly {
					t.Errorf("%s: podlog root %s is not on a read-only hostPath mount", name, r)
				}
			}
			if m, v, ok := mountFor(agent, c, pl.StateDir); !ok || v.HostPath == nil || m.ReadOnly || m.MountPath != stateDir {
				t.Errorf("%s: podlog.state_dir %s is not on the writable hostPath state directory %s", name, pl.StateDir, stateDir)
			}
			if pl.Kubernetes.Labels {
				if a := agent.pod.Spec.AutomountServiceAccountToken; a != nil && !*a {
					t.Errorf("%s: podlog.kubernetes.labels without the service account token mounted", name)
				}
				if pl.Kubernetes.APIServer != "" {
					t.Errorf("%s: podlog.kubernetes.api_server %s: leave it to KUBERNETES_SERVICE_HOST, which every cluster sets", name, pl.Kubernetes.APIServer)
				}
			}
			if a.Sinks.File.Enabled {
				t.Errorf("%s: the agent must not keep events on the node (sinks.file)", name)
			}

			fw := a.Sinks.Forward
			aggHTTP := aggCfg.listeners(t)[0]
			// The token the agent presents is one the aggregators accept.
			if secret, key, ok := secretItem(agent, c, fw.TokenFile); !ok || key != "agent-token" {
				t.Errorf("%s: sinks.forward.token_file %q is not the agent-token key of a mounted Secret (%s %s)", name, fw.TokenFile, secret, key)
			} else if aggSecret, _, ok := secretItem(agg, aggC, aggCfg.Ingest.Auth.TokensFile); !ok || aggSecret != secret {
				t.Errorf("%s: the agent's token comes from Secret %s, the aggregators' ingest tokens from %q", name, secret, aggSecret)
			}
			switch {
			case aggHTTP.tls && fw.TLS.CAFile == "":
				t.Errorf("%s: forwarding over HTTPS needs sinks.forward.tls.ca_file (the aggregators' CA)", name)
			case fw.TLS.CAFile != "":
				// The CA of the Secret that holds the aggregators' certificate.
				secret, key, ok := secretItem(agent, c, fw.TLS.CAFile)
				aggSecret, _, _ := secretItem(agg, aggC, aggCfg.HTTP.TLS.CertFile)
				if !ok || key != "ca.crt" || secret != aggSecret {
					t.Errorf("%s: sinks.forward.tls.ca_file %s is %s %s, want ca.crt of %q (the aggregators' certificate)", name, fw.TLS.CAFile, secret, key, aggSecret)
				}
			}
			maxBody := httpin.DefaultConfig().MaxBodyBytes
			if aggCfg.Ingest.MaxBodyBytes != "" {
				maxBody = config.ByteSize(parseByteSize(t, aggCfg.Ingest.MaxBodyBytes))
			}
			if fw.MaxRequestBytes > maxBody {
				t.Errorf("%s: sinks.forward.max_request_bytes %s is above the aggregators' ingest.max_body_bytes %s", name, fw.MaxRequestBytes, maxBody)
			}

			// The forward URLs reach the aggregators' HTTP listener.
			if len(fw.URLs) == 0 || slices.Equal(fw.URLs, forward.DefaultConfig().URLs) {
				t.Errorf("%s: sinks.forward.urls %v do not name the aggregators", name, fw.URLs)
			}
			for _, raw := range fw.URLs {
				u, err := url.Parse(raw)
				if err != nil {
					t.Fatal(err)
				}
				if want := map[bool]string{false: "http", true: "https"}[aggHTTP.tls]; u.Scheme != want {
					t.Errorf("%s: forward URL %s: the aggregators speak %s", name, raw, want)
				}
				if u.Path != "/v1/ingest" {
					t.Errorf("%s: forward URL %s is not the intake /v1/ingest", name, raw)
				}
				svc, ns, _ := strings.Cut(strings.TrimSuffix(u.Hostname(), ".cluster.local"), ".")
				ns = strings.TrimSuffix(ns, ".svc")
				var reached bool
				for _, s := range all[corev1.Service](b) {
					if s.Name != svc || s.Namespace != ns || !agg.selectedBy(s.Spec.Selector) {
						continue
					}
					for _, sp := range s.Spec.Ports {
						if fmt.Sprint(sp.Port) != u.Port() {
							continue
						}
						target := sp.TargetPort
						if target.Type == intstr.Int && target.IntVal == 0 {
							target = intstr.FromInt32(sp.Port)
						}
						p, ok := containerPort(aggC, target, corev1.ProtocolTCP)
						reached = reached || (ok && p == aggHTTP.port)
					}
				}
				if !reached {
					t.Errorf("%s: forward URL %s reaches no Service port of the aggregators' HTTP listener %s in this overlay", name, raw, aggHTTP.port)
				}
			}
		})
	}
}

// TestAgentConfigDrift: production's agent config (a whole file, as
// kustomize replaces ConfigMaps whole) is the base's with the forward URLs
// on HTTPS and the aggregators' CA, nothing else, so a change to the base
// cannot silently miss production.
func TestAgentConfigDrift(t *testing.T) {
	load := func(name string) map[string]any {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(data, &m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return m
	}
	base := load(filepath.Join("base", "config", "agent.yaml"))
	prod := load(filepath.Join("overlays", "production", "agent-config.yaml"))
	forwardOf := func(m map[string]any) map[string]any {
		sinks, _ := m["sinks"].(map[string]any)
		fw, _ := sinks["forward"].(map[string]any)
		if fw == nil {
			t.Fatal("no sinks.forward")
		}
		return fw
	}
	bf, pf := forwardOf(base), forwardOf(prod)
	bu, pu := fmt.Sprint(bf["urls"]), fmt.Sprint(pf["urls"])
	if strings.ReplaceAll(bu, "http://", "https://") != pu {
		t.Errorf("sinks.forward.urls: base %s, production %s: want the same URLs over HTTPS", bu, pu)
	}
	delete(bf, "urls")
	delete(pf, "urls")
	delete(pf, "tls")
	if b, p := fmt.Sprint(base), fmt.Sprint(prod); b != p {
		t.Errorf("overlays/production/agent-config.yaml differs from base/config/agent.yaml beyond sinks.forward.urls and .tls:\nbase:       %s\nproduction: %s", b, p)
	}
}
