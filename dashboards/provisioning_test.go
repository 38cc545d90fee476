package dashboards

import (
	"bytes"
	"os"
	"path"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The provisioning files are decoded strictly into the keys Grafana's file
// provisioning documents (apiVersion 1), so a misspelt key fails here
// instead of being ignored by Grafana.

type datasourceFile struct {
	APIVersion  int `yaml:"apiVersion"`
	Datasources []struct {
		Name      string            `yaml:"name"`
		UID       string            `yaml:"uid"`
		Type      string            `yaml:"type"`
		Access    string            `yaml:"access"`
		OrgID     int               `yaml:"orgId"`
		URL       string            `yaml:"url"`
		IsDefault bool              `yaml:"isDefault"`
		Editable  bool              `yaml:"editable"`
		Version   int               `yaml:"version"`
		JSONData  map[string]any    `yaml:"jsonData"`
		Secure    map[string]string `yaml:"secureJsonData"`
	} `yaml:"datasources"`
}

type dashboardProviderFile struct {
	APIVersion int `yaml:"apiVersion"`
	Providers  []struct {
		Name                  string `yaml:"name"`
		OrgID                 int    `yaml:"orgId"`
		Type                  string `yaml:"type"`
		Folder                string `yaml:"folder"`
		FolderUID             string `yaml:"folderUid"`
		AllowUIUpdates        bool   `yaml:"allowUiUpdates"`
		DisableDeletion       bool   `yaml:"disableDeletion"`
		UpdateIntervalSeconds int    `yaml:"updateIntervalSeconds"`
		Options               struct {
			Path                      string `yaml:"path"`
			FoldersFromFilesStructure bool   `yaml:"foldersFromFilesStructure"`
		} `yaml:"options"`
	} `yaml:"providers"`
}

func decodeStrict(t *testing.T, file string, v any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func TestProvisionedDatasource(t *testing.T) {
	var f datasourceFile
	decodeStrict(t, "../deploy/grafana/provisioning/datasources/leitstand.yaml", &f)
	if f.APIVersion != 1 || len(f.Datasources) != 1 {
		t.Fatalf("want apiVersion 1 and one data source, got %+v", f)
	}
	ds := f.Datasources[0]
	if ds.UID != DatasourceUID || ds.Name != DatasourceUID {
		t.Errorf("data source uid %q name %q: the dashboards' variable defaults to %q", ds.UID, ds.Name, DatasourceUID)
	}
	if ds.Type != "prometheus" || ds.Access != "proxy" || ds.URL != "http://leitstand:8080" || !ds.IsDefault {
		t.Errorf("want the default prometheus data source at http://leitstand:8080 through Grafana's proxy, got %+v", ds)
	}
	known := map[string]bool{"httpMethod": true, "timeInterval": true, "queryTimeout": true, "prometheusType": true, "prometheusVersion": true, "cacheLevel": true, "incrementalQuerying": true, "httpHeaderName1": true}
	// Off loopback the query API wants a role token (README "Access off
	// loopback"): Grafana must send one, and from a secret, not inline.
	if ds.JSONData["httpHeaderName1"] != "Authorization" || !strings.HasPrefix(ds.Secure["httpHeaderValue1"], "Bearer ${") {
		t.Errorf("the data source must send Authorization: Bearer ${ENV}, got jsonData %v secureJsonData %v", ds.JSONData, ds.Secure)
	}
	for k := range ds.JSONData {
		if !known[k] {
			t.Errorf("jsonData key %q is not a Prometheus data source option", k)
		}
	}
}

func TestProvisionedDashboards(t *testing.T) {
	var f dashboardProviderFile
	decodeStrict(t, "../deploy/grafana/provisioning/dashboards/leitstand.yaml", &f)
	if f.APIVersion != 1 || len(f.Providers) != 1 {
		t.Fatalf("want apiVersion 1 and one provider, got %+v", f)
	}
	p := f.Providers[0]
	if p.Type != "file" || !path.IsAbs(p.Options.Path) || p.Folder == "" {
		t.Errorf("want a file provider with an absolute path and a folder, got %+v", p)
	}
	if p.AllowUIUpdates {
		t.Errorf("the dashboards are generated; UI edits would be lost on the next provisioning run")
	}
}
