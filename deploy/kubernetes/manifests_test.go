package kubernetes

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite testdata/rendered, the copies of shipped rules and dashboards, and the generated PrometheusRules")

// overlays are the kustomizations operators apply, one golden file each.
var overlays = []string{"single-node", "production", "production-monitoring"}

// namespace is where every namespaced object goes.
const namespace = "leitstand"

func TestMain(m *testing.M) {
	flag.Parse()
	if *update {
		// Copies first: the overlays render from them.
		if err := syncCopies(); err != nil {
			fmt.Fprintln(os.Stderr, "updating copies:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	cleanupBinary()
	os.Exit(code)
}

// object is one rendered object, decoded into its Go type.
type object struct {
	apiVersion, kind, name, namespace string
	obj                               any
}

func (o object) String() string {
	if o.namespace == "" {
		return o.kind + "/" + o.name
	}
	return o.kind + "/" + o.namespace + "/" + o.name
}

// bundle is one overlay, rendered.
type bundle struct {
	overlay string
	yaml    []byte
	objects []object
}

// newObject returns a pointer to the Go type of apiVersion/kind. A kind
// missing here fails the test: every object we ship is decoded strictly.
func newObject(apiVersion, kind string) any {
	switch apiVersion + "/" + kind {
	case "v1/Namespace":
		return &corev1.Namespace{}
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}
	case "v1/Service":
		return &corev1.Service{}
	case "v1/Secret":
		return &corev1.Secret{}
	case "apps/v1/DaemonSet":
		return &appsv1.DaemonSet{}
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}
	case "rbac.authorization.k8s.io/v1/ClusterRole":
		return &rbacv1.ClusterRole{}
	case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}
	case "rbac.authorization.k8s.io/v1/Role":
		return &rbacv1.Role{}
	case "rbac.authorization.k8s.io/v1/RoleBinding":
		return &rbacv1.RoleBinding{}
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "scheduling.k8s.io/v1/PriorityClass":
		return &schedulingv1.PriorityClass{}
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &monv1.ServiceMonitor{}
	case "monitoring.coreos.com/v1/PodMonitor":
		return &monv1.PodMonitor{}
	case "monitoring.coreos.com/v1/PrometheusRule":
		return &monv1.PrometheusRule{}
	}
	return nil
}

// clusterScoped kinds have no namespace.
var clusterScoped = map[string]bool{"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true, "PriorityClass": true}

var (
	renderMu sync.Mutex
	renders  = map[string]*bundle{}
)

// render builds an overlay as `kubectl apply -k` would (krusty's defaults:
// files only from inside each kustomization's folder, no plugins) and
// decodes every object strictly. Results are shared between tests.
func render(t *testing.T, overlay string) *bundle {
	t.Helper()
	renderMu.Lock()
	defer renderMu.Unlock()
	if b, ok := renders[overlay]; ok {
		return b
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join("overlays", overlay))
	if err != nil {
		t.Fatalf("kustomize build overlays/%s: %v", overlay, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatalf("overlays/%s as YAML: %v", overlay, err)
	}
	b := &bundle{overlay: overlay, yaml: out}
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatalf("overlays/%s: %s %s: %v", overlay, r.GetKind(), r.GetName(), err)
		}
		o, err := decodeStrict(y)
		if err != nil {
			t.Fatalf("overlays/%s: %s %s: %v", overlay, r.GetKind(), r.GetName(), err)
		}
		b.objects = append(b.objects, o)
	}
	renders[overlay] = b
	return b
}

// decodeStrict converts YAML to JSON (refusing duplicate keys) and decodes
// it into the object's Go type with sigs.k8s.io/json's strict mode: unknown
// fields and fields in the wrong case are errors. sigs.k8s.io/yaml's own
// UnmarshalStrict would accept "containerport" for "containerPort".
func decodeStrict(y []byte) (object, error) {
	j, err := yaml.YAMLToJSONStrict(y)
	if err != nil {
		return object{}, err
	}
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(j, &meta); err != nil {
		return object{}, err
	}
	o := object{apiVersion: meta.APIVersion, kind: meta.Kind, name: meta.Metadata.Name, namespace: meta.Metadata.Namespace}
	o.obj = newObject(meta.APIVersion, meta.Kind)
	if o.obj == nil {
		return o, fmt.Errorf("no Go type known for %s %s: add it to newObject", meta.APIVersion, meta.Kind)
	}
	strict, err := kjson.UnmarshalStrict(j, o.obj)
	if err != nil {
		return o, err
	}
	if len(strict) > 0 {
		return o, fmt.Errorf("strict decoding into %T: %v", o.obj, strict)
	}
	return o, nil
}

// all returns the objects of type T.
func all[T any](b *bundle) []*T {
	var out []*T
	for _, o := range b.objects {
		if v, ok := o.obj.(*T); ok {
			out = append(out, v)
		}
	}
	return out
}

// TestRender builds every overlay, decodes every object strictly and
// compares the output with the golden file.
func TestRender(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			b := render(t, overlay)
			golden := filepath.Join("testdata", "rendered", overlay+".yaml")
			if *update {
				if err := os.WriteFile(golden, b.yaml, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./deploy/kubernetes -update)", err)
			}
			if !bytes.Equal(want, b.yaml) {
				t.Errorf("overlays/%s renders differently from %s; review the change and run go test ./deploy/kubernetes -update\n%s",
					overlay, golden, firstDiff(string(want), string(b.yaml)))
			}
		})
	}
}

// TestObjects checks what every overlay renders, object by object: no
// Secret at all, every namespaced object in our namespace, names unique.
func TestObjects(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			b := render(t, overlay)
			seen := map[string]bool{}
			for _, o := range b.objects {
				if seen[o.String()] {
					t.Errorf("%s is rendered twice", o)
				}
				seen[o.String()] = true
				if o.kind == "Secret" {
					// Secrets are created by the operator; manifests only
					// reference them (volumes with items), so no value is
					// ever committed or rendered.
					t.Errorf("%s is rendered: ship references to Secrets, never Secrets", o)
				}
				switch {
				case clusterScoped[o.kind] && o.namespace != "":
					t.Errorf("%s is cluster-scoped but has namespace %q", o, o.namespace)
				case !clusterScoped[o.kind] && o.namespace != namespace:
					t.Errorf("%s is in namespace %q, want %q", o, o.namespace, namespace)
				}
			}
		})
	}
}

// firstDiff shows the first differing line of two texts with some context.
func firstDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return fmt.Sprintf("line %d:\n  golden: %q\n  now:    %q", i+1, w, g)
		}
	}
	return "(only line endings differ)"
}
