package rules

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"
	_ "github.com/prometheus/prometheus/discovery/file" // file_sd_configs
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	"gopkg.in/yaml.v3"
)

// scraper runs Prometheus' discovery and scrape managers for the configured
// jobs, appending into the TSDB.
type scraper struct {
	cfg       *promconfig.Config
	discovery *discovery.Manager
	manager   *scrape.Manager
	cancel    context.CancelFunc
	reg       prometheus.Registerer
	log       *slog.Logger
}

// promScrapeConfig renders leitstand's scrape section as a Prometheus
// configuration and loads it with Prometheus' own loader, so defaults and
// checks are exactly Prometheus'.
func promScrapeConfig(c ScrapeConfig) (*promconfig.Config, error) {
	type static struct {
		Targets []string          `yaml:"targets"`
		Labels  map[string]string `yaml:"labels,omitempty"`
	}
	type fileSD struct {
		Files   []string `yaml:"files"`
		Refresh string   `yaml:"refresh_interval,omitempty"`
	}
	type job struct {
		JobName        string   `yaml:"job_name"`
		ScrapeInterval string   `yaml:"scrape_interval,omitempty"`
		ScrapeTimeout  string   `yaml:"scrape_timeout,omitempty"`
		MetricsPath    string   `yaml:"metrics_path,omitempty"`
		Scheme         string   `yaml:"scheme,omitempty"`
		HonorLabels    bool     `yaml:"honor_labels,omitempty"`
		Static         []static `yaml:"static_configs,omitempty"`
		FileSD         []fileSD `yaml:"file_sd_configs,omitempty"`
	}
	type global struct {
		ScrapeInterval string `yaml:"scrape_interval"`
		ScrapeTimeout  string `yaml:"scrape_timeout"`
	}
	doc := struct {
		Global  global `yaml:"global"`
		Scrapes []job  `yaml:"scrape_configs"`
	}{Global: global{ScrapeInterval: model.Duration(c.Interval).String(), ScrapeTimeout: model.Duration(c.Timeout).String()}}
	dur := func(d interface{ Nanoseconds() int64 }) string {
		if d.Nanoseconds() == 0 {
			return ""
		}
		return model.Duration(d.Nanoseconds()).String()
	}
	for _, j := range c.Jobs {
		pj := job{JobName: j.JobName, MetricsPath: j.MetricsPath, Scheme: j.Scheme, HonorLabels: j.HonorLabels,
			ScrapeInterval: dur(j.Interval), ScrapeTimeout: dur(j.Timeout)}
		if pj.ScrapeTimeout == "" && j.Interval != 0 && j.Interval < c.Timeout {
			pj.ScrapeTimeout = pj.ScrapeInterval
		}
		if len(j.Targets) > 0 {
			pj.Static = []static{{Targets: j.Targets, Labels: j.Labels}}
		}
		if len(j.FileSDFiles) > 0 {
			pj.FileSD = []fileSD{{Files: j.FileSDFiles, Refresh: dur(j.FileSDRefresh)}}
		}
		doc.Scrapes = append(doc.Scrapes, pj)
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return promconfig.Load(string(b), slog.New(slog.DiscardHandler))
}

func newScraper(c ScrapeConfig, app storage.AppendableV2, reg prometheus.Registerer, log *slog.Logger) (*scraper, error) {
	cfg, err := promScrapeConfig(c)
	if err != nil {
		return nil, err
	}
	// A nil Registerer makes scrape.NewManager panic; reg is the run's own.
	m, err := scrape.NewManager(&scrape.Options{DiscoveryReloadOnStartup: true}, log, nil, nil, app, reg)
	if err != nil {
		return nil, err
	}
	return &scraper{cfg: cfg, manager: m, reg: reg, log: log}, nil
}

// start begins discovery and scraping; it runs until stop.
func (s *scraper) start(parent context.Context, wg *sync.WaitGroup) error {
	ctx, cancel := context.WithCancel(parent)
	s.cancel = cancel
	sdMetrics, err := discovery.CreateAndRegisterSDMetrics(s.reg)
	if err != nil {
		return err
	}
	s.discovery = discovery.NewManager(ctx, s.log, s.reg, sdMetrics)
	if s.discovery == nil {
		return fmt.Errorf("cannot create the discovery manager")
	}
	sd := map[string]discovery.Configs{}
	for _, sc := range s.cfg.ScrapeConfigs {
		sd[sc.JobName] = sc.ServiceDiscoveryConfigs
	}
	if err := s.discovery.ApplyConfig(sd); err != nil {
		return err
	}
	if err := s.manager.ApplyConfig(s.cfg); err != nil {
		return err
	}
	wg.Go(func() { _ = s.discovery.Run() })
	wg.Go(func() { _ = s.manager.Run(s.discovery.SyncCh()) })
	return nil
}

// stop ends scraping and discovery.
func (s *scraper) stop() {
	if s.manager != nil && s.cancel != nil {
		s.manager.Stop()
	}
	if s.cancel != nil {
		s.cancel()
	}
}

// splitHostPort checks a static target.
func splitHostPort(t string) (string, int, error) {
	host, port, err := net.SplitHostPort(t)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 || host == "" {
		return "", 0, fmt.Errorf("bad port in %q", t)
	}
	return host, p, nil
}
