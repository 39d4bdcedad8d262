package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// tarEntries reads a tar stream into headers by name, plus the name order.
func tarEntries(t *testing.T, r io.Reader) (map[string]*tar.Header, map[string][]byte, []string) {
	t.Helper()
	hdrs, data := map[string]*tar.Header{}, map[string][]byte{}
	var order []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hdrs, data, order
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		hdrs[h.Name], data[h.Name] = h, b
		order = append(order, h.Name)
	}
}

func TestWriteTarDeterministicAndDeduplicated(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	if err := os.WriteFile(a, []byte("payload"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(a, filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	tr := newTree(io.Discard)
	for _, p := range []struct{ dst, src string }{
		{"/usr/bin/x", a}, {"/bin/x", filepath.Join(dir, "b")},
	} {
		if err := tr.addHost(p.dst, p.src); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.addData("/etc/motd", []byte("hi\n"), 0o644, false); err != nil {
		t.Fatal(err)
	}

	var first, second bytes.Buffer
	if _, err := tr.writeTar(&first); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.writeTar(&second); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Bytes(), second.Bytes()) {
		t.Fatal("two writes of one tree differ")
	}

	hdrs, data, order := tarEntries(t, &first)
	if !sort.StringsAreSorted(order) {
		t.Errorf("entries not sorted: %q", order)
	}
	want := []string{"bin/", "bin/x", "etc/", "etc/motd", "usr/", "usr/bin/", "usr/bin/x"}
	if len(order) != len(want) {
		t.Fatalf("entries = %q, want %q", order, want)
	}
	// The second path of one inode becomes a hardlink to the first.
	if h := hdrs["bin/x"]; h.Typeflag != tar.TypeReg || string(data["bin/x"]) != "payload" || h.Mode != 0o755 {
		t.Errorf("bin/x = %+v", h)
	}
	if h := hdrs["usr/bin/x"]; h.Typeflag != tar.TypeLink || h.Linkname != "bin/x" {
		t.Errorf("usr/bin/x = type %c link %q, want hardlink to bin/x", h.Typeflag, h.Linkname)
	}
	for _, n := range order {
		h := hdrs[n]
		if !h.ModTime.Equal(epoch) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s leaks host metadata: mtime %v uid %d gid %d uname %q", n, h.ModTime, h.Uid, h.Gid, h.Uname)
		}
		if h.Typeflag == tar.TypeDir && h.Mode != 0o755 {
			t.Errorf("parent %s has mode %o, want 755", n, h.Mode)
		}
	}
}

func TestTreeConflicts(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tr := newTree(io.Discard)
	if err := tr.addHost("/a", f); err != nil {
		t.Fatal(err)
	}
	if err := tr.addHost("/a/b", f); err == nil {
		t.Error("adding below a file succeeded")
	}
	if err := tr.mkdir("/a", 0o755, false); err == nil {
		t.Error("mkdir over a file succeeded")
	}
	// Weak additions never replace explicit ones.
	if err := tr.addData("/a", []byte("weak"), 0o600, true); err != nil || tr.entries["/a"].src != f {
		t.Errorf("weak add replaced the explicit file: %v", err)
	}
}

// TestMirrorThroughDirSymlinks rebuilds a merged-/usr layout in a temp dir:
// a relative link inside a symlinked directory must land where the image
// will resolve it, with content from where the host keeps it.
func TestMirrorThroughDirSymlinks(t *testing.T) {
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mk := func(p string) string { return filepath.Join(root, p) }
	for _, d := range []string{"usr/lib", "usr/lib64"} {
		if err := os.MkdirAll(mk(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(mk("usr/lib/y"), []byte("lib"), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"lib64": "usr/lib64", "lib": "usr/lib", "usr/lib64/x": "../lib/y"} {
		if err := os.Symlink(target, mk(link)); err != nil {
			t.Fatal(err)
		}
	}
	tr := newTree(io.Discard)
	if err := tr.mirror("/lib64/x", mk("lib64/x"), true); err != nil {
		t.Fatal(err)
	}
	if e := tr.entries["/lib64/x"]; e == nil || e.kind != kindSymlink || e.link != "../lib/y" {
		t.Fatalf("/lib64/x = %+v", e)
	}
	if e := tr.entries["/lib/y"]; e == nil || e.kind != kindFile || e.src != mk("usr/lib/y") {
		t.Fatalf("/lib/y = %+v, want the file from usr/lib/y", e)
	}
}
