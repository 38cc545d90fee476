package elasticsearch

import (
	"fmt"
	"net/http"

	es8 "github.com/elastic/go-elasticsearch/v8"
)

// SearchClient reads from the cluster the sink writes to, with the sink's
// URLs, credentials (secret files read again when they change) and CA. The
// role-scoped API's event search sends its queries through it; it never
// writes.
type SearchClient struct {
	client *es8.BaseClient
	tr     *http.Transport
	creds  *credentials
}

// NewSearchClient builds a client from a validated sink config. It reads
// the credential and CA files; it does not contact the cluster.
func NewSearchClient(cfg Config) (*SearchClient, error) {
	creds, err := newCredentials(&cfg)
	if err != nil {
		return nil, fmt.Errorf("elasticsearch: %w", err)
	}
	tr, err := newTransport(&cfg)
	if err != nil {
		return nil, err
	}
	client, err := es8.NewBaseClient(es8.Config{
		Addresses: cfg.URLs,
		Transport: tr,
		// A search is cheap to repeat, but the caller is waiting: one
		// attempt, and its error goes back to the caller with the reason.
		DisableRetry: true,
	})
	if err != nil {
		return nil, fmt.Errorf("elasticsearch: %w", err)
	}
	return &SearchClient{client: client, tr: tr, creds: creds}, nil
}

// Perform sends req (a URL with path and query only) to a node of the
// cluster with the configured credentials. It implements go-elasticsearch's
// esapi.Transport.
func (c *SearchClient) Perform(req *http.Request) (*http.Response, error) {
	if auth := c.creds.authorization(); auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := c.client.Perform(req)
	if err == nil && res.StatusCode == http.StatusUnauthorized {
		c.creds.invalidate() // a rotated secret file is read again
	}
	return res, err
}

// Close closes idle connections.
func (c *SearchClient) Close() { c.tr.CloseIdleConnections() }

// SearchIndices returns the index patterns of the events the sink writes,
// for searching them: the data streams logs-*-<namespace> and the dated
// indices <index_prefix>-*, both whatever the mode (the sink falls back to
// dated indices on a cluster without data streams, and a changed mode
// leaves the old ones), with the dead-letter indices excluded.
func (c *Config) SearchIndices() []string {
	return []string{
		"logs-*-" + c.Namespace,
		c.IndexPrefix + "-*",
		"-" + c.DeadLetterIndex + "-*",
	}
}
