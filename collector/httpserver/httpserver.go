// Package httpserver runs leitstand's one HTTP listener, which carries the
// intake, later the Sentry endpoints and the API, and /metrics, /healthz
// and /readyz. It owns the socket and its timeouts, nothing that is served.
package httpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/internal/config"
	"github.com/leitstand/leitstand/internal/tlsconf"
)

// Config of the HTTP listener.
type Config struct {
	// Listen is the address to listen on. Default 127.0.0.1:8080.
	Listen string `yaml:"listen"`
	// ReadHeaderTimeout bounds how long a client may take to send headers,
	// so slow clients cannot hold connections. Default 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included. Default 60s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds handling and answering one request, which includes
	// waiting for the sinks. Default 60s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes keep-alive connections idle this long. Default 120s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes limits request headers. Default 64KiB.
	MaxHeaderBytes config.ByteSize `yaml:"max_header_bytes"`
	// TLS serves HTTPS when a certificate is set.
	TLS tlsconf.Config `yaml:"tls"`
}

// DefaultConfig returns the listener's defaults.
func DefaultConfig() Config {
	return Config{
		Listen:            "127.0.0.1:8080",
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		TLS:               tlsconf.Default(),
	}
}

// Validate checks the settings.
func (c *Config) Validate() error {
	var errs config.Errors
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs.Addf("listen", "want host:port, got %q: %v", c.Listen, err)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"read_header_timeout", c.ReadHeaderTimeout}, {"read_timeout", c.ReadTimeout}, {"write_timeout", c.WriteTimeout}, {"idle_timeout", c.IdleTimeout}} {
		if d.v <= 0 {
			errs.Addf(d.key, "must be positive, got %s", d.v)
		}
	}
	if c.MaxHeaderBytes < 1024 {
		errs.Addf("max_header_bytes", "must be at least 1KiB, got %s", c.MaxHeaderBytes)
	}
	errs.Nest("tls", c.TLS.Validate())
	return errs.Err()
}

// IsLoopback reports whether addr (host:port) listens on loopback only.
// An empty host means every interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Server is the listener as a lifecycle component.
type Server struct {
	cfg  Config
	srv  *http.Server
	log  *slog.Logger
	addr net.Addr

	errs     chan error
	mu       sync.Mutex
	started  bool
	shutdown bool
}

// New creates a server for handler.
func New(cfg Config, handler http.Handler, log *slog.Logger) *Server {
	return &Server{
		cfg: cfg,
		log: log,
		srv: &http.Server{
			Handler:           handler,
			ReadHeaderTimeout: cfg.ReadHeaderTimeout,
			ReadTimeout:       cfg.ReadTimeout,
			WriteTimeout:      cfg.WriteTimeout,
			IdleTimeout:       cfg.IdleTimeout,
			MaxHeaderBytes:    int(cfg.MaxHeaderBytes),
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		errs: make(chan error, 1),
	}
}

// Start binds the socket, so a port in use fails start-up, and serves in
// the background.
func (s *Server) Start(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.shutdown {
		return errors.New("http server: already started")
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("http server: %w", err)
	}
	if s.cfg.TLS.Enabled() {
		tc, err := s.cfg.TLS.ServerTLS(s.log)
		if err != nil {
			ln.Close()
			return fmt.Errorf("http server: tls: %w", err)
		}
		s.srv.TLSConfig = tc
		ln = tls.NewListener(ln, tc)
	}
	s.started, s.addr = true, ln.Addr()
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.errs <- fmt.Errorf("http server on %s: %w", s.addr, err)
		}
	}()
	return nil
}

// Addr is the bound address, after Start.
func (s *Server) Addr() net.Addr { return s.addr }

// Err reports a failure of the serving loop after Start.
func (s *Server) Err() <-chan error { return s.errs }

// Shutdown stops accepting and waits for requests in flight, which finish
// their way through the pipeline, up to ctx's deadline.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	started := s.started && !s.shutdown
	s.shutdown = true
	s.mu.Unlock()
	if !started {
		return nil
	}
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
		return fmt.Errorf("http server: requests still running at the deadline: %w", err)
	}
	return nil
}

var _ collector.Component = (*Server)(nil)
