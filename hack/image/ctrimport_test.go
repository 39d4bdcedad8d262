package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCRIName(t *testing.T) {
	for in, want := range map[string]string{
		"doppel-agent:v1":              "docker.io/library/doppel-agent:v1",
		"doppel-agent":                 "docker.io/library/doppel-agent:latest",
		"team/app:2":                   "docker.io/team/app:2",
		"docker.io/library/x:1":        "docker.io/library/x:1",
		"index.docker.io/x:1":          "docker.io/library/x:1",
		"registry.k8s.io/pause:3.10.1": "registry.k8s.io/pause:3.10.1",
		"localhost:5000/a/b:c":         "localhost:5000/a/b:c",
	} {
		if got, err := criName(in); err != nil || got != want {
			t.Errorf("criName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// fakeCtr is a containerd that either normalizes names on import (as ctr
// 1.6 does) or keeps them verbatim, recording the calls.
type fakeCtr struct {
	normalize bool
	images    map[string]bool
	calls     []string
}

func (f *fakeCtr) run(args ...string) ([]byte, error) {
	f.calls = append(f.calls, strings.Join(args, " "))
	sub := args[4:] // after --address S -n k8s.io
	switch {
	case sub[0] == "images" && sub[1] == "import":
		if f.normalize {
			f.images["docker.io/library/doppel-agent:v1"] = true
		} else {
			f.images["doppel-agent:v1"] = true
		}
		return []byte("unpacking ...done\n"), nil
	case sub[0] == "images" && sub[1] == "ls":
		var out strings.Builder
		for n := range f.images {
			fmt.Fprintln(&out, n)
		}
		return []byte(out.String()), nil
	case sub[0] == "images" && sub[1] == "tag":
		f.images[sub[4]] = true
		return nil, nil
	}
	return nil, fmt.Errorf("unexpected ctr %q", args)
}

func TestImportArchive(t *testing.T) {
	for _, normalize := range []bool{true, false} {
		f := &fakeCtr{normalize: normalize, images: map[string]bool{}}
		old := ctrRunner
		ctrRunner = f.run
		var out strings.Builder
		err := importArchive("/run/c.sock", "/tmp/a.tar", []string{"doppel-agent:v1"}, &out)
		ctrRunner = old
		if err != nil {
			t.Fatalf("normalize=%v: %v", normalize, err)
		}
		if !strings.Contains(out.String(), "imported docker.io/library/doppel-agent:v1") {
			t.Errorf("normalize=%v: output %q", normalize, out.String())
		}
		if f.calls[0] != "--address /run/c.sock -n k8s.io images import --all-platforms /tmp/a.tar" {
			t.Errorf("import call = %q", f.calls[0])
		}
		tagged := strings.Contains(strings.Join(f.calls, "\n"), "images tag --force doppel-agent:v1 docker.io/library/doppel-agent:v1")
		if tagged == normalize {
			t.Errorf("normalize=%v: tag call made = %v; calls %q", normalize, tagged, f.calls)
		}
	}
}

// TestImportIntoContainerd runs against a real containerd when
// DOPPEL_TEST_CONTAINERD_SOCKET names its socket (it adds an image to the
// k8s.io namespace there).
func TestImportIntoContainerd(t *testing.T) {
	socket := os.Getenv("DOPPEL_TEST_CONTAINERD_SOCKET")
	if socket == "" {
		t.Skip("set DOPPEL_TEST_CONTAINERD_SOCKET to import into a containerd")
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "hello")
	if err := os.WriteFile(f, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := runOK(t, "-tag", "doppel-import-test:v1", "-out", filepath.Join(dir, "img.tar"),
		"-add", f+":/hello", "-import", socket)
	if !strings.Contains(out, "imported docker.io/library/doppel-import-test:v1") {
		t.Errorf("output:\n%s", out)
	}
}
