package kubernetes

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/leitstand/leitstand/internal/peers"
)

// TestPodsBecomeReady runs each container's own command on its rendered
// config and mounted files, with only the listen addresses moved to free
// loopback ports, and asks its probes what the kubelet would: every probe
// answers 200 (readiness too, with Elasticsearch unreachable: the spool
// takes the events), over HTTPS with the Secret's certificate where the
// config says so. The agent runs for real (startAgentPeers): it reads a pod
// log file from its /var/log/pods, asks a loopback stand-in of the
// Kubernetes API for the pod's labels and must forward the line, anonymized,
// to a real aggregator on loopback. Then SIGTERM must end the process with
// status 0 within the pod's grace period. Nothing dials past loopback.
func TestPodsBecomeReady(t *testing.T) {
	bin := leitstandBinary(t)
	// production-monitoring runs the production pods unchanged.
	for _, overlay := range []string{"single-node", "production"} {
		b := render(t, overlay)
		for _, w := range workloads(b) {
			c := &w.pod.Spec.Containers[0]
			t.Run(overlay+"/"+w.name, func(t *testing.T) {
				t.Parallel()
				runPod(t, bin, b, w, c)
			})
		}
	}
}

func runPod(t *testing.T, bin string, b *bundle, w workload, c *corev1.Container) {
	tr := materialize(t, b, w, c)
	cfgPath := argValue(c.Args, "-config")
	name, raw, cfg := containerConfig(t, b, w, c)
	text := podConfig(t, tr, w, raw)
	kubeAPI := kubeAPIUnused
	var ap *agentPeers
	if cfg.agent() {
		ap = startAgentPeers(t, bin, tr, decodeAgent(t, name, raw))
		text = ap.redirect(t, text)
		kubeAPI = ap.kubeAPI
	}

	// Every listener moves to a free loopback port; a port number shared
	// by UDP and TCP (syslog) keeps one new number for both.
	moved := map[int32]int{}
	for _, l := range cfg.listeners(t) {
		if isLoopback(l.host) {
			continue
		}
		if _, ok := moved[l.port.number]; !ok {
			p, err := peers.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			moved[l.port.number] = p
		}
		from := fmt.Sprintf("%s:%d", l.host, l.port.number)
		if !strings.Contains(raw, from) {
			t.Fatalf("listener %s is not written as %q in the config", l.what, from)
		}
		text = strings.ReplaceAll(text, from, fmt.Sprintf("127.0.0.1:%d", moved[l.port.number]))
	}
	// Peers in the cluster (Elasticsearch, Alertmanager) become a closed
	// loopback port: the daemon must come up with them down, and no test
	// resolves or dials a name outside this machine.
	closed, err := peers.FreeTCPPort()
	if err != nil {
		t.Fatal(err)
	}
	text = clusterURL.ReplaceAllString(text, fmt.Sprintf("${1}127.0.0.1:%d", closed))
	writeFile(t, tr.path(cfgPath), []byte(text))

	args := []string{"run", "-config", tr.path(cfgPath), "-data", tr.path(argValue(c.Args, "-data"))}
	cmd := exec.Command(bin, args...)
	cmd.Env = downwardEnv(w, c, kubeAPI)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// exited is closed when the process has ended; waitErr is its status.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // it has usually exited by now
		<-exited
		if t.Failed() {
			t.Logf("leitstand's log:\n%s", tail(logs.String(), 40))
		}
	})

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(testCerts(t).caCert)
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "leitstand-aggregator.leitstand.svc", MinVersion: tls.VersionTLS12},
	}}
	probes := []struct {
		name string
		p    *corev1.Probe
	}{{"startup", c.StartupProbe}, {"liveness", c.LivenessProbe}, {"readiness", c.ReadinessProbe}}
	for _, pr := range probes {
		if pr.p == nil {
			continue
		}
		g := pr.p.HTTPGet
		cp, ok := containerPort(c, g.Port, corev1.ProtocolTCP)
		if !ok {
			t.Fatalf("%s probe port %s is no container port", pr.name, g.Port.String())
		}
		scheme := strings.ToLower(string(g.Scheme))
		if scheme == "" {
			scheme = "http"
		}
		url := fmt.Sprintf("%s://127.0.0.1:%d%s", scheme, moved[cp.number], g.Path)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		last := waitOK(ctx, client, url, exited, &waitErr)
		cancel()
		if last != nil {
			t.Fatalf("%s probe %s (%s in the pod): %v", pr.name, url, g.Path, last)
		}
	}

	if ap != nil {
		ap.checkForwarded(t, exited, logs)
	}

	// SIGTERM drains within the grace period and exits 0.
	grace := 30 * time.Second
	if g := w.pod.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("after SIGTERM: %v", waitErr)
		}
		if d := time.Since(start); d > grace {
			t.Errorf("stopping took %s, the grace period is %s", d, grace)
		}
	case <-time.After(grace):
		t.Errorf("still running %s after SIGTERM: the kubelet would kill it", grace)
	}
	if ap != nil {
		ap.checkPositions(t)
	}
}

// waitOK polls url until it answers 200, the process exits or ctx ends.
func waitOK(ctx context.Context, client *http.Client, url string, exited <-chan struct{}, waitErr *error) error {
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			var body bytes.Buffer
			_, _ = body.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(body.String()))
		}
		last = err
		select {
		case <-exited:
			return fmt.Errorf("the process exited (%v); last answer: %v", *waitErr, last)
		case <-ctx.Done():
			return fmt.Errorf("no 200 in time; last answer: %v", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// clusterURL matches the scheme and host:port of a URL to a Service by its
// cluster DNS name.
var clusterURL = regexp.MustCompile(`(https?://)[a-z0-9.-]+\.svc(?:\.cluster\.local)?(?::\d+)?`)
