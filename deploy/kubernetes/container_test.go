package kubernetes

import (
	"debug/elf"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

const dockerfile = "../container/Dockerfile"

// TestContainerfile: no container engine runs here, so the build file is
// checked for what the manifests rely on, and the binary is built the way
// it builds it.
func TestContainerfile(t *testing.T) {
	data, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	var froms []string
	user := ""
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, line)
			user = "" // USER is per stage
		case "USER":
			user = f[1]
		}
	}
	if len(froms) < 2 {
		t.Errorf("want a multi-stage build, have %d FROM lines", len(froms))
	} else if final := froms[len(froms)-1]; !strings.Contains(final, "distroless/static") && !strings.Contains(final, " scratch") {
		t.Errorf("the final stage %q is neither distroless/static nor scratch", final)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=${VERSION}", "./cmd/leitstand"} {
		if !strings.Contains(text, want) {
			t.Errorf("the build does not use %s", want)
		}
	}

	// The image's user is the aggregator's runAsUser: files the image
	// brings and the volume's fsGroup agree.
	uid, _, _ := strings.Cut(user, ":")
	n, err := strconv.ParseInt(uid, 10, 64)
	if err != nil || n == 0 {
		t.Fatalf("the final stage's USER %q must be a numeric non-root UID", user)
	}
	for _, overlay := range overlays {
		for _, sts := range all[appsv1.StatefulSet](render(t, overlay)) {
			sc := sts.Spec.Template.Spec.SecurityContext
			if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != n {
				t.Errorf("%s: the aggregator's runAsUser is not the image's USER %d", overlay, n)
			}
		}
	}

	// Exposed ports are the listeners the manifests use.
	expose := regexp.MustCompile(`(?m)^EXPOSE\s+(.*)$`).FindStringSubmatch(text)
	if expose == nil {
		t.Error("no EXPOSE")
	} else {
		for _, p := range []string{"8080/tcp", "5514/udp", "5514/tcp", "6514/tcp"} {
			if !strings.Contains(expose[1], p) {
				t.Errorf("EXPOSE lacks %s", p)
			}
		}
	}
}

// TestBinaryStatic: built with the Dockerfile's flags, the binary needs no
// dynamic loader (it runs on distroless/static or scratch) and reports the
// version given by -ldflags.
func TestBinaryStatic(t *testing.T) {
	bin := leitstandBinary(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary is dynamically linked (%s)", p.Type)
		}
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("leitstand version: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "leitstand "+testVersion+" ") {
		t.Errorf("leitstand version printed %q, want the -ldflags version %s", out, testVersion)
	}
}
