package session

import (
	"context"
	"io"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
)

func testPod() *fakeRemote {
	return &fakeRemote{files: map[string]string{
		"/etc/":                  "",
		"/etc/resolv.conf":       "nameserver 10.96.0.10\nsearch staging.svc.cluster.local svc.cluster.local\n",
		"/etc/config/":           "",
		"/etc/config/db.host":    "postgres",
		"/etc/config/db.port":    "5432",
		"/etc/config/nested/":    "",
		"/etc/config/nested/key": "v",
	}}
}

func TestRemoteFileIsAReadOnlyCopy(t *testing.T) {
	f := newRemoteFiles(testPod(), t.TempDir())
	file, errno := f.open(context.Background(), "/etc/config/db.host")
	if errno != 0 {
		t.Fatal(errno)
	}
	defer file.Close()
	data, _ := io.ReadAll(file)
	if string(data) != "postgres" {
		t.Fatalf("content %q", data)
	}
	if _, err := file.Write([]byte("x")); err == nil {
		t.Fatal("the served copy is writable")
	}
	if _, errno := f.open(context.Background(), "/etc/missing"); errno != syscall.ENOENT {
		t.Fatalf("missing file: errno %v, want ENOENT", errno)
	}
}

func TestRemoteDirectoryIsListedAndMapsBack(t *testing.T) {
	f := newRemoteFiles(testPod(), t.TempDir())
	dir, errno := f.open(context.Background(), "/etc/config")
	if errno != 0 {
		t.Fatal(errno)
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	if want := []string{"db.host", "db.port", "nested"}; len(names) != 3 || names[0] != want[0] || names[2] != want[2] {
		t.Fatalf("listing %v, want %v", names, want)
	}
	// A path the process builds from the directory fd maps back to the pod.
	p, ok := f.remotePath(filepath.Join(dir.Name(), "db.port"))
	if !ok || p != "/etc/config/db.port" {
		t.Fatalf("mapped to %q %v", p, ok)
	}
	if st, errno := f.stat(context.Background(), p, true); errno != 0 || st.Size != 4 {
		t.Fatalf("stat of a listed entry: %+v %v", st, errno)
	}
	if _, ok := f.remotePath("/tmp/elsewhere"); ok {
		t.Fatal("an unrelated path mapped")
	}
}

func TestResolvConfRewriteKeepsStatAndContentInAgreement(t *testing.T) {
	f := newRemoteFiles(testPod(), t.TempDir())
	f.rewrite["/etc/resolv.conf"] = withUseVC
	file, errno := f.open(context.Background(), "/etc/resolv.conf")
	if errno != 0 {
		t.Fatal(errno)
	}
	data, _ := io.ReadAll(file)
	file.Close()
	st, errno := f.stat(context.Background(), "/etc/resolv.conf", true)
	if errno != 0 || st.Size != int64(len(data)) {
		t.Fatalf("stat size %d, content %d bytes (%v)", st.Size, len(data), errno)
	}
	if string(withUseVC(data)) != string(data) {
		t.Fatal("rewrite not idempotent")
	}
	if want := "options use-vc\n"; string(data[len(data)-len(want):]) != want {
		t.Fatalf("resolv.conf served as %q", data)
	}
}

// A pod's file over the limit is EFBIG, not a helper out of memory; one at
// the limit is served whole.
func TestRemoteFileLimit(t *testing.T) {
	old := maxRemoteFile
	maxRemoteFile = 8
	t.Cleanup(func() { maxRemoteFile = old })
	f := newRemoteFiles(testPod(), t.TempDir())
	small, errno := f.open(context.Background(), "/etc/config/nested/key")
	if errno != 0 {
		t.Fatalf("a small file: %v", errno)
	}
	small.Close()
	maxRemoteFile = 7
	if _, errno := f.open(context.Background(), "/etc/config/db.host"); errno != syscall.EFBIG { // 8 bytes
		t.Fatalf("a file over the limit: errno %v, want EFBIG", errno)
	}
	maxRemoteFile = 8
	file, errno := f.open(context.Background(), "/etc/config/db.host")
	if errno != 0 {
		t.Fatalf("a file at the limit: %v", errno)
	}
	defer file.Close()
	if data, _ := io.ReadAll(file); string(data) != "postgres" {
		t.Errorf("content %q", data)
	}
}
