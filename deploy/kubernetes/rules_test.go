package kubernetes

import (
	"context"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/yaml"

	"github.com/leitstand/leitstand/internal/peers"
)

// TestRulesValid runs Prometheus' own checker over the rules as the
// cluster gets them: the files of the rules ConfigMap the aggregators mount
// and the groups of every PrometheusRule. promtool comes from Debian's
// prometheus package (internal/peers installs it; with CI=true a missing
// promtool fails instead of skipping).
func TestRulesValid(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	promtool, err := peers.Bin(ctx, "promtool")
	peers.Check(t, err)

	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			b := render(t, overlay)
			dir := t.TempDir()
			var files []string
			for _, cm := range all[monv1.PrometheusRule](b) {
				if len(cm.Spec.Groups) == 0 {
					t.Errorf("PrometheusRule %s has no groups", cm.Name)
				}
				y, err := yaml.Marshal(ruleFile{Groups: cm.Spec.Groups})
				if err != nil {
					t.Fatal(err)
				}
				f := filepath.Join(dir, "prometheusrule-"+cm.Name+".yml")
				writeFile(t, f, y)
				files = append(files, f)
			}
			for _, cm := range renderedRuleConfigMaps(b) {
				for name, data := range cm {
					// leitstand check validates the log rules; promtool
					// gets the Prometheus rules (JSON is YAML).
					j, err := withoutLogRules([]byte(data))
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					f := filepath.Join(dir, "configmap-"+name)
					writeFile(t, f, j)
					files = append(files, f)
				}
			}
			if len(files) == 0 {
				t.Skip("no rules rendered")
			}
			sort.Strings(files)
			out, err := exec.CommandContext(ctx, promtool, append([]string{"check", "rules"}, files...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("promtool check rules: %v\n%s", err, out)
			}
			if n := strings.Count(string(out), "SUCCESS"); n != len(files) {
				t.Errorf("promtool reported %d successes for %d files:\n%s", n, len(files), out)
			}
		})
	}
}

// renderedRuleConfigMaps returns the data of ConfigMaps holding rule files.
func renderedRuleConfigMaps(b *bundle) []map[string]string {
	var out []map[string]string
	for _, o := range b.objects {
		if o.kind != "ConfigMap" || !strings.HasPrefix(o.name, "leitstand-rules") {
			continue
		}
		cm := configMap(b, o.name)
		rules := map[string]string{}
		for k, v := range cm.Data {
			if strings.HasSuffix(k, ".yml") || strings.HasSuffix(k, ".yaml") {
				rules[k] = v
			}
		}
		out = append(out, rules)
	}
	return out
}
