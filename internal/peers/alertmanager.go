package peers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// DefaultAlertmanagerConfig routes every alert to a receiver that sends
// nothing: enough to post alerts and read them back through the API.
const DefaultAlertmanagerConfig = `route:
  receiver: "null"
  group_wait: 0s
  group_interval: 1s
receivers:
  - name: "null"
`

// AlertmanagerOptions configures StartAlertmanager and
// StartAlertmanagerCluster.
type AlertmanagerOptions struct {
	// Config is the content of alertmanager.yml; default
	// DefaultAlertmanagerConfig.
	Config string
	// Port is the HTTP port; 0 picks a free one. Ignored by
	// StartAlertmanagerCluster.
	Port int
	// ExtraArgs are added to the command line.
	ExtraArgs []string
	// StartTimeout bounds the start of each instance; default 30s.
	StartTimeout time.Duration
}

// Alertmanager is a running Alertmanager.
type Alertmanager struct {
	*Instance
	// URL is the HTTP endpoint, e.g. http://127.0.0.1:41234 (API under
	// /api/v2/).
	URL  string
	Port int
	// ClusterPort is the gossip port; 0 when gossip is off.
	ClusterPort int
	// ConfigPath is the configuration file it runs with.
	ConfigPath string
}

// StartAlertmanager starts one Alertmanager with gossip off and waits for
// /-/ready.
func StartAlertmanager(ctx context.Context, opts AlertmanagerOptions) (*Alertmanager, error) {
	if err := Ensure(ctx, PeerAlertmanager); err != nil {
		return nil, err
	}
	port, err := pickPort(opts.Port)
	if err != nil {
		return nil, err
	}
	am, err := launchAlertmanager(opts, port, 0, nil)
	if err != nil {
		return nil, err
	}
	if err := am.waitReady(ctx, opts); err != nil {
		return nil, am.stopAfter(err)
	}
	return am, nil
}

// AlertmanagerCluster is an HA group of Alertmanagers gossiping on loopback.
type AlertmanagerCluster []*Alertmanager

// URLs returns the instances' URLs, as a notifier is configured with them.
func (c AlertmanagerCluster) URLs() []string {
	urls := make([]string, len(c))
	for i, am := range c {
		urls[i] = am.URL
	}
	return urls
}

// Stop stops every instance.
func (c AlertmanagerCluster) Stop() error {
	var errs []error
	for _, am := range c {
		errs = append(errs, am.Stop())
	}
	return errors.Join(errs...)
}

// StartAlertmanagerCluster starts n (at least 2) Alertmanagers that peer
// with each other, as an HA pair does in production, and waits until each
// one reports the cluster ready with all n members.
func StartAlertmanagerCluster(ctx context.Context, n int, opts AlertmanagerOptions) (AlertmanagerCluster, error) {
	if n < 2 {
		return nil, fmt.Errorf("peers: an Alertmanager cluster needs at least 2 members, not %d", n)
	}
	if err := Ensure(ctx, PeerAlertmanager); err != nil {
		return nil, err
	}
	httpPorts := make([]int, n)
	clusterPorts := make([]int, n)
	for i := range n {
		var err error
		if httpPorts[i], err = FreeTCPPort(); err != nil {
			return nil, err
		}
		// memberlist uses TCP and UDP on the same port.
		if clusterPorts[i], err = FreePort(); err != nil {
			return nil, err
		}
	}
	// Launch all members before waiting for any: each one waits for its
	// peers to settle, so starting them one after the other would add up
	// those waits.
	var c AlertmanagerCluster
	for i := range n {
		var peers []string
		for j, p := range clusterPorts {
			if j != i {
				peers = append(peers, hostPort(p))
			}
		}
		am, err := launchAlertmanager(opts, httpPorts[i], clusterPorts[i], peers)
		if err != nil {
			_ = c.Stop()
			return nil, err
		}
		c = append(c, am)
	}
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = 60 * time.Second // settling takes a few gossip rounds
	}
	for _, am := range c {
		if err := am.waitReady(ctx, opts); err != nil {
			_ = c.Stop()
			return nil, err
		}
		err := waitReady(ctx, am.Process(), timeout, "settled cluster", func(ctx context.Context) error {
			body, err := httpGet(ctx, am.URL+"/api/v2/status")
			if err != nil {
				return err
			}
			var st struct {
				Cluster struct {
					Status string            `json:"status"`
					Peers  []json.RawMessage `json:"peers"`
				} `json:"cluster"`
			}
			if err := json.Unmarshal([]byte(body), &st); err != nil {
				return err
			}
			if st.Cluster.Status != "ready" || len(st.Cluster.Peers) != n {
				return fmt.Errorf("cluster %s with %d of %d peers", st.Cluster.Status, len(st.Cluster.Peers), n)
			}
			return nil
		})
		if err != nil {
			_ = c.Stop()
			return nil, err
		}
	}
	return c, nil
}

// launchAlertmanager starts one instance without waiting for it;
// clusterPort 0 turns gossip off.
func launchAlertmanager(opts AlertmanagerOptions, port, clusterPort int, peers []string) (*Alertmanager, error) {
	if opts.Config == "" {
		opts.Config = DefaultAlertmanagerConfig
	}
	bin, err := findBin("prometheus-alertmanager")
	if err != nil {
		return nil, &UnavailableError{Peer: PeerAlertmanager, Err: err}
	}
	in, err := newInstance("alertmanager")
	if err != nil {
		return nil, err
	}
	am := &Alertmanager{Instance: in, URL: "http://" + hostPort(port), Port: port, ClusterPort: clusterPort,
		ConfigPath: filepath.Join(in.Dir, "alertmanager.yml")}
	if err := writeFile(am.ConfigPath, opts.Config); err != nil {
		return nil, in.stopAfter(err)
	}
	args := []string{
		"--config.file=" + am.ConfigPath,
		"--storage.path=" + filepath.Join(in.Dir, "data"),
		"--web.listen-address=" + hostPort(port),
	}
	if clusterPort == 0 {
		// An empty address turns gossip off; the default would listen on
		// 0.0.0.0:9094.
		args = append(args, "--cluster.listen-address=")
	} else {
		args = append(args,
			"--cluster.listen-address="+hostPort(clusterPort),
			// Without it Alertmanager looks for a private IP to advertise
			// and finds none on loopback.
			"--cluster.advertise-address="+hostPort(clusterPort))
		for _, p := range peers {
			args = append(args, "--cluster.peer="+p)
		}
	}
	args = append(args, opts.ExtraArgs...)
	proc, err := startProcess(procSpec{
		name: "alertmanager", path: bin, args: args, dir: in.Dir,
		logPath: filepath.Join(in.Dir, "alertmanager.log"),
	})
	if err != nil {
		return nil, in.stopAfter(err)
	}
	in.add(proc)
	return am, nil
}

// waitReady waits until the instance answers /-/ready.
func (am *Alertmanager) waitReady(ctx context.Context, opts AlertmanagerOptions) error {
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	return waitReady(ctx, am.Process(), timeout, "/-/ready", httpOK(am.URL+"/-/ready"))
}
