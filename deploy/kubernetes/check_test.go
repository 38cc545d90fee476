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
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

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

// rewrite maps every path under a mount in a config text to the tree.
func (tr *tree) rewrite(text string) string {
	var pairs []string
	for _, m := range tr.mounts {
		pairs = append(pairs, m+"/", tr.path(m)+"/")
	}
	return strings.NewReplacer(pairs...).Replace(text)
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// downwardEnv is the container's environment as the kubelet would set it
// (downward API values faked).
func downwardEnv(w workload, c *corev1.Container) []string {
	env := []string{"PATH=" + os.Getenv("PATH")}
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			v = map[string]string{
				"metadata.name": w.name + "-0", "metadata.namespace": namespace, "spec.nodeName": "node-1",
			}[e.ValueFrom.FieldRef.FieldPath]
		}
		env = append(env, e.Name+"="+v)
	}
	return env
}

// TestLeitstandCheck runs `leitstand check` on the config each container
// runs with, its Secrets and ConfigMaps laid out as the pod would see them:
// the container's own args, with check for run.
func TestLeitstandCheck(t *testing.T) {
	bin := leitstandBinary(t)
	forEachContainer(t, func(t *testing.T, b *bundle, w workload, c *corev1.Container) {
		args := append([]string{"check"}, containerFlags(t, b, w, c)...)
		cmd := exec.Command(bin, args...)
		cmd.Env = downwardEnv(w, c)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("leitstand %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
		if !strings.HasPrefix(stdout.String(), "config OK") {
			t.Errorf("leitstand check printed %q", stdout.String())
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
	writeFile(t, tr.path(cfgPath), []byte(tr.rewrite(string(raw))))
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
				cmd.Env = downwardEnv(w, c)
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

// agentNext is the part of the agent's config that waits for `role: agent`
// in cmd/leitstand, decoded into the components' own config types.
type agentNext struct {
	Role      string `yaml:"role"`
	Receivers struct {
		Podlog podlog.Config `yaml:"podlog"`
	} `yaml:"receivers"`
	Sinks struct {
		File    file.Config    `yaml:"file"`
		Forward forward.Config `yaml:"forward"`
	} `yaml:"sinks"`
}

func decodeAgentNext(t *testing.T, name, text string) agentNext {
	t.Helper()
	var n agentNext
	n.Receivers.Podlog = podlog.DefaultConfig()
	n.Sinks.File = file.DefaultConfig()
	n.Sinks.Forward = forward.DefaultConfig()
	src, err := config.Decode(name, []byte(text), &n)
	if err != nil {
		t.Fatalf("%v", src.Annotate(err))
	}
	return n
}

// TestAgentNextConfig checks the agent sections that wait for `role: agent`
// (agent.next.yaml) against the podlog, file and forward packages and
// against the DaemonSet that will run them: strict keys, Validate with the
// mounted files, pod log roots on read-only host mounts, positions on the
// writable state directory, and the forward URL reaching the aggregators'
// HTTP listener with the scheme it speaks.
func TestAgentNextConfig(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "10.43.0.1")
	t.Setenv("KUBERNETES_SERVICE_PORT", "443")
	t.Setenv("NODE_NAME", "node-1")
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			name := filepath.Join("overlays", overlay, "agent.next.yaml")
			if overlay == "production-monitoring" {
				name = filepath.Join("overlays", "production", "agent.next.yaml")
			}
			if _, err := os.Stat(name); err != nil {
				name = filepath.Join("base", "config", "agent.next.yaml")
			}
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			b := render(t, overlay)
			var agent, agg workload
			for _, w := range workloads(b) {
				if w.ds != nil {
					agent = w
				} else {
					agg = w
				}
			}
			c := &agent.pod.Spec.Containers[0]

			n := decodeAgentNext(t, name, string(data))
			if n.Role != "agent" {
				t.Errorf("%s: role %q, want agent", name, n.Role)
			}
			pl := n.Receivers.Podlog
			if !pl.Enabled {
				t.Errorf("%s: receivers.podlog is not enabled", name)
			}
			for _, r := range pl.Roots {
				m, v, ok := mountFor(agent, c, r)
				if !ok || v.HostPath == nil || !m.ReadOnly {
					t.Errorf("%s: podlog root %s is not on a read-only hostPath mount", name, r)
				}
			}
			if m, v, ok := mountFor(agent, c, pl.StateDir); !ok || v.HostPath == nil || m.ReadOnly {
				t.Errorf("%s: podlog state_dir %s is not on the writable hostPath state directory", name, pl.StateDir)
			}
			if n.Sinks.File.Enabled {
				t.Errorf("%s: the agent must not keep events on the node (sinks.file.enabled: false)", name)
			}

			// Validate against the files the DaemonSet mounts.
			tr := materialize(t, b, agent, c)
			nt := decodeAgentNext(t, name, tr.rewrite(string(data)))
			k := &nt.Receivers.Podlog.Kubernetes
			if strings.HasPrefix(k.TokenFile, podlog.ServiceAccountDir) {
				k.TokenFile = tr.path(k.TokenFile)
			}
			if strings.HasPrefix(k.CAFile, podlog.ServiceAccountDir) {
				k.CAFile = tr.path(k.CAFile)
			}
			var errs config.Errors
			errs.Nest("receivers.podlog", nt.Receivers.Podlog.Validate())
			errs.Nest("sinks.file", nt.Sinks.File.Validate())
			errs.Nest("sinks.forward", nt.Sinks.Forward.Validate())
			if err := errs.Err(); err != nil {
				t.Errorf("%s does not validate against the DaemonSet's mounts:\n%v", name, err)
			}

			// The forward URLs reach the aggregators' HTTP listener.
			_, _, aggCfg := containerConfig(t, b, agg, &agg.pod.Spec.Containers[0])
			http := aggCfg.listeners(t)[0]
			for _, raw := range n.Sinks.Forward.URLs {
				u, err := url.Parse(raw)
				if err != nil {
					t.Fatal(err)
				}
				if want := map[bool]string{false: "http", true: "https"}[http.tls]; u.Scheme != want {
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
						p, ok := containerPort(&agg.pod.Spec.Containers[0], target, corev1.ProtocolTCP)
						reached = reached || (ok && p == http.port)
					}
				}
				if !reached {
					t.Errorf("%s: forward URL %s reaches no Service port of the aggregators' HTTP listener", name, raw)
				}
			}
			if http.tls && n.Sinks.Forward.TLS.CAFile == "" {
				t.Errorf("%s: forwarding over HTTPS needs tls.ca_file (the aggregators' CA)", name)
			}
		})
	}
}
