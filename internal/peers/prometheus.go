package peers

import (
	"context"
	"path/filepath"
	"strings"
	"time"
)

// DefaultPrometheusConfig scrapes nothing: enough to query, receive
// remote_write, or be configured by a test's own file.
const DefaultPrometheusConfig = `global:
  scrape_interval: 1s
  evaluation_interval: 1s
`

// PrometheusOptions configures StartPrometheus.
type PrometheusOptions struct {
	// Config is the content of prometheus.yml; default
	// DefaultPrometheusConfig. Rule files it names relative to itself are
	// looked up in the instance folder: put them there with Files.
	Config string
	// Files are more files (rule files, ...) written into the instance
	// folder before start, by name relative to it.
	Files map[string]string
	// Port is the HTTP port; 0 picks a free one.
	Port int
	// RemoteWriteReceiver accepts remote_write at /api/v1/write.
	RemoteWriteReceiver bool
	// ExtraArgs are added to the command line (e.g. --web.enable-lifecycle).
	ExtraArgs []string
	// StartTimeout bounds the start; default 30s.
	StartTimeout time.Duration
}

// Prometheus is a running Prometheus server.
type Prometheus struct {
	*Instance
	// URL is the HTTP endpoint, e.g. http://127.0.0.1:41234.
	URL        string
	Port       int
	ConfigPath string
}

// StartPrometheus starts Prometheus with its TSDB in a temp folder and
// waits for /-/ready.
func StartPrometheus(ctx context.Context, opts PrometheusOptions) (*Prometheus, error) {
	if err := Ensure(ctx, PeerPrometheus); err != nil {
		return nil, err
	}
	if opts.Config == "" {
		opts.Config = DefaultPrometheusConfig
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	bin, err := findBin("prometheus")
	if err != nil {
		return nil, &UnavailableError{Peer: PeerPrometheus, Err: err}
	}
	port, err := pickPort(opts.Port)
	if err != nil {
		return nil, err
	}
	in, err := newInstance("prometheus")
	if err != nil {
		return nil, err
	}
	p := &Prometheus{Instance: in, URL: "http://" + hostPort(port), Port: port,
		ConfigPath: filepath.Join(in.Dir, "prometheus.yml")}
	if err := writeFile(p.ConfigPath, opts.Config); err != nil {
		return nil, in.stopAfter(err)
	}
	for name, content := range opts.Files {
		if err := writeFile(filepath.Join(in.Dir, filepath.Clean("/"+name)), content); err != nil {
			return nil, in.stopAfter(err)
		}
	}
	args := []string{
		"--config.file=" + p.ConfigPath,
		"--storage.tsdb.path=" + filepath.Join(in.Dir, "data"),
		"--web.listen-address=" + hostPort(port),
	}
	if opts.RemoteWriteReceiver {
		args = append(args, "--web.enable-remote-write-receiver")
	}
	args = append(args, opts.ExtraArgs...)
	proc, err := startProcess(procSpec{
		name: "prometheus", path: bin, args: args, dir: in.Dir,
		logPath: filepath.Join(in.Dir, "prometheus.log"),
	})
	if err != nil {
		return nil, in.stopAfter(err)
	}
	in.add(proc)
	if err := waitReady(ctx, proc, opts.StartTimeout, "/-/ready", httpOK(p.URL+"/-/ready")); err != nil {
		return nil, in.stopAfter(err)
	}
	return p, nil
}

// NodeExporterOptions configures StartNodeExporter.
type NodeExporterOptions struct {
	// Port is the HTTP port; 0 picks a free one.
	Port int
	// ExtraArgs are added to the command line (e.g. --collector.disable-defaults).
	ExtraArgs []string
	// StartTimeout bounds the start; default 30s.
	StartTimeout time.Duration
}

// NodeExporter is a running prometheus-node-exporter.
type NodeExporter struct {
	*Instance
	// URL is the HTTP endpoint; metrics are at URL+"/metrics".
	URL  string
	Port int
}

// StartNodeExporter starts node_exporter and waits until /metrics answers
// with node metrics.
func StartNodeExporter(ctx context.Context, opts NodeExporterOptions) (*NodeExporter, error) {
	if err := Ensure(ctx, PeerNodeExporter); err != nil {
		return nil, err
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	bin, err := findBin("prometheus-node-exporter")
	if err != nil {
		return nil, &UnavailableError{Peer: PeerNodeExporter, Err: err}
	}
	port, err := pickPort(opts.Port)
	if err != nil {
		return nil, err
	}
	in, err := newInstance("node-exporter")
	if err != nil {
		return nil, err
	}
	ne := &NodeExporter{Instance: in, URL: "http://" + hostPort(port), Port: port}
	args := append([]string{"--web.listen-address=" + hostPort(port)}, opts.ExtraArgs...)
	proc, err := startProcess(procSpec{
		name: "node-exporter", path: bin, args: args, dir: in.Dir,
		logPath: filepath.Join(in.Dir, "node-exporter.log"),
	})
	if err != nil {
		return nil, in.stopAfter(err)
	}
	in.add(proc)
	err = waitReady(ctx, proc, opts.StartTimeout, "/metrics", func(ctx context.Context) error {
		body, err := httpGet(ctx, ne.URL+"/metrics")
		if err != nil {
			return err
		}
		if !strings.Contains(body, "node_exporter_build_info") {
			return errString("no node_exporter_build_info in /metrics")
		}
		return nil
	})
	if err != nil {
		return nil, in.stopAfter(err)
	}
	return ne, nil
}

// errString is a constant error message.
type errString string

func (e errString) Error() string { return string(e) }
