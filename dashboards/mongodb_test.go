package dashboards

import (
	"bufio"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// documentedMetric is one line of testdata/mongodb_exporter_metrics.txt.
type documentedMetric struct {
	name   string
	labels []string
	origin string
}

func readDocumentedMongoDBMetrics(t *testing.T) map[string]documentedMetric {
	t.Helper()
	f, err := os.Open("testdata/mongodb_exporter_metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]documentedMetric{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) < 3 {
			t.Fatalf("mongodb_exporter_metrics.txt:%d: want metric, labels and origin", line)
		}
		m := documentedMetric{name: fields[0], origin: strings.Join(fields[2:], " ")}
		// The origin may contain spaces (document paths do); take it from
		// the line rather than the fields.
		m.origin = strings.TrimSpace(text[strings.Index(text, fields[2]):])
		if fields[1] != "-" {
			m.labels = strings.Split(fields[1], ",")
		}
		out[m.name] = m
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// The naming rules of exporter/metrics.go (prometheusize), restated.
var (
	mongoPrefixes = [][2]string{
		{"serverStatus.wiredTiger.transaction", "ss_wt_txn"},
		{"serverStatus.wiredTiger", "ss_wt"},
		{"serverStatus", "ss"},
		{"replSetGetStatus", "rs"},
	}
	mongoSpecialChars = regexp.MustCompile(`[^a-zA-Z0-9_]+`)
	mongoUnderscores  = regexp.MustCompile(`__+`)
)

func mongoMetricName(path string) string {
	for _, p := range mongoPrefixes {
		if strings.HasPrefix(path, p[0]+".") {
			path = p[1] + strings.TrimPrefix(path, p[0])
			break
		}
	}
	s := mongoSpecialChars.ReplaceAllString(path, "_")
	s = strings.TrimSuffix(s, "_")
	s = mongoUnderscores.ReplaceAllString(s, "_")
	return "mongodb_" + strings.TrimPrefix(s, "_")
}

// TestMongoDBMetricNames checks the MongoDB dashboard against the metric
// names and labels Percona's mongodb_exporter documents. There is no MongoDB
// server in this environment, so this is the check its panels get instead of
// the live-data test the node and PostgreSQL panels pass.
func TestMongoDBMetricNames(t *testing.T) {
	documented := readDocumentedMongoDBMetrics(t)
	for _, m := range documented {
		if path, ok := strings.CutPrefix(m.origin, "path:"); ok {
			if got := mongoMetricName(path); got != m.name {
				t.Errorf("%s: the exporter names document path %q %s", m.name, path, got)
			}
		}
	}
	// Labels every series of a scrape has, and the topology labels the
	// exporter adds to the metrics it derives from server documents.
	targetLabels := []string{"instance", "job"}
	topologyLabels := []string{"rs_nm", "cl_role", "cl_id", "rs_state"}

	var board renderedDashboard
	for _, r := range renderAll(t) {
		if r.m.UID == "leitstand-mongodb" {
			board = r
		}
	}
	if !strings.Contains(board.m.Description, MongoDBExporter) {
		t.Errorf("the dashboard's description does not name the exporter and its version")
	}
	used := map[string]bool{}
	for _, q := range board.queries() {
		expr, err := board.expand(q.t.Expr, staticIntervals)
		if err != nil {
			t.Errorf("%s: %v", q, err)
			continue
		}
		e, err := parseExpr(expr)
		if err != nil {
			t.Errorf("%s: %v", q, err)
			continue
		}
		allowed := map[string]bool{}
		for _, l := range targetLabels {
			allowed[l] = true
		}
		for _, name := range metricNames(e) {
			used[name] = true
			m, ok := documented[name]
			if !ok {
				t.Errorf("%s: %s is not a documented mongodb_exporter metric (testdata/mongodb_exporter_metrics.txt)", q, name)
				continue
			}
			for _, l := range m.labels {
				allowed[l] = true
			}
			if strings.HasPrefix(m.origin, "path:") {
				for _, l := range topologyLabels {
					allowed[l] = true
				}
			}
		}
		for _, l := range append(labelsUsed(e), legendLabels(q.t.LegendFormat)...) {
			if !allowed[l] {
				t.Errorf("%s: label %q is not one the exporter puts on %v", q, l, metricNames(e))
			}
		}
	}
	for name := range documented {
		if !used[name] {
			t.Errorf("%s is listed in testdata/mongodb_exporter_metrics.txt but no panel uses it", name)
		}
	}
	if !slices.Contains(sortedKeys(used), "mongodb_up") {
		t.Error("the dashboard does not show mongodb_up")
	}
}
