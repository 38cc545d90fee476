//lint:file-ignore SA1019 The SDK marks the classic dashboard model deprecated in favour of dashboardv2, but Grafana's file provisioning reads the classic JSON, so the classic model is the one written here.

package dashboards

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// Dashboard is one generated dashboard.
type Dashboard struct {
	// UID is Grafana's stable identifier of the dashboard; links and the
	// file name use it.
	UID string
	// Title is the dashboard's title.
	Title string
	// Model is the classic dashboard model as the SDK built it.
	Model *dashboard.Dashboard
}

// FileName is the name Write gives the dashboard's JSON file.
func (d *Dashboard) FileName() string { return d.UID + ".json" }

// JSON renders the dashboard as Grafana's classic dashboard JSON: indented
// by two spaces, object keys sorted, PromQL unescaped (no \u003e for >), and
// a final newline. The same dashboard always renders to the same bytes.
func (d *Dashboard) JSON() ([]byte, error) {
	raw, err := json.Marshal(d.Model)
	if err != nil {
		return nil, fmt.Errorf("dashboard %s: %w", d.UID, err)
	}
	// The SDK's own MarshalJSON methods escape <, > and & inside nested
	// values; a round trip through generic values, encoded without HTML
	// escaping, undoes that and sorts every object's keys. UseNumber keeps
	// numbers exactly as the SDK wrote them.
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("dashboard %s: %w", d.UID, err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("dashboard %s: %w", d.UID, err)
	}
	return buf.Bytes(), nil
}

// boards lists every dashboard, in the order All returns them.
var boards = []func() *board{
	nodesBoard,
	postgresBoard,
	mongodbBoard,
	pipelineBoard,
	alertsBoard,
}

// All builds every dashboard.
func All() ([]*Dashboard, error) {
	var out []*Dashboard
	var errs []error
	uids := map[string]bool{}
	for _, f := range boards {
		b := f()
		if uids[b.uid] {
			errs = append(errs, fmt.Errorf("dashboard uid %q used twice", b.uid))
			continue
		}
		uids[b.uid] = true
		m, err := b.build()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, &Dashboard{UID: b.uid, Title: b.title, Model: m})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// Write writes every dashboard's JSON into dir (created if missing), one
// file per dashboard named after its UID. Other files in dir are left alone.
func Write(dir string) error {
	all, err := All()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range all {
		data, err := d.JSON()
		if err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(dir, d.FileName()), data); err != nil {
			return err
		}
	}
	return nil
}

// writeFileAtomic replaces path in one rename, so Grafana, which rereads
// the folder on a timer, never loads half a file.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
