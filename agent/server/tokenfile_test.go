package server

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/doppel-dev/doppel/protocol"
)

// downwardFile plays the kubelet's downward API volume: the file is a
// symlink through "..data" to a timestamped directory, and an update
// writes a new directory and swaps the "..data" symlink (atomic_writer.go).
type downwardFile struct {
	dir string
	gen int
}

func newDownwardFile(t *testing.T, annotations map[string]string) *downwardFile {
	t.Helper()
	d := &downwardFile{dir: t.TempDir()}
	d.write(t, annotations)
	if err := os.Symlink(filepath.Join("..data", "annotations"), filepath.Join(d.dir, "annotations")); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *downwardFile) path() string { return filepath.Join(d.dir, "annotations") }

// write formats annotations as the kubelet does (fieldpath.FormatMap:
// sorted `key="value"` lines, %q-quoted, no final newline) and swaps them in.
func (d *downwardFile) write(t *testing.T, annotations map[string]string) {
	t.Helper()
	var lines []string
	for k, v := range annotations {
		lines = append(lines, fmt.Sprintf("%v=%q", k, v))
	}
	slices.Sort(lines)
	d.gen++
	old := fmt.Sprintf("..gen%d", d.gen-1)
	gen := fmt.Sprintf("..gen%d", d.gen)
	if err := os.Mkdir(filepath.Join(d.dir, gen), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, gen, "annotations"), []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(d.dir, "..data_tmp")
	if err := os.Symlink(gen, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(d.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(d.dir, old))
}

func TestParseTokenAnnotations(t *testing.T) {
	h1, h2 := protocol.HashToken("one"), protocol.HashToken("two")
	data := strings.Join([]string{
		`doppel.dev/port="7463"`,
		`kubectl.kubernetes.io/last-applied-configuration="{\"a\":\"b=c\"}\n"`,
		h2.Annotation() + `="` + h2.String() + `"`,
		h1.Annotation() + `="` + h1.String() + `"`,
		`token.doppel.dev/again="` + h1.String() + `"`, // a duplicate
		`token.doppel.dev/short="abcd"`,
		`token.doppel.dev/unquoted=` + h1.String(),
		`no equals sign`,
		``,
	}, "\n")
	got, bad := ParseTokenAnnotations([]byte(data))
	want := []protocol.TokenHash{h1, h2}
	if h2.String() < h1.String() {
		want = []protocol.TokenHash{h2, h1}
	}
	if !slices.Equal(got, want) {
		t.Errorf("hashes %v, want %v", got, want)
	}
	if len(bad) != 2 || !strings.HasPrefix(bad[0], "token.doppel.dev/short") || !strings.HasPrefix(bad[1], "token.doppel.dev/unquoted") {
		t.Errorf("bad %q", bad)
	}
	if got, bad := ParseTokenAnnotations(nil); len(got) != 0 || len(bad) != 0 {
		t.Errorf("empty file: %v %v", got, bad)
	}
	if h1.Annotation() != "token.doppel.dev/"+h1.String()[:16] {
		t.Errorf("annotation key %s", h1.Annotation())
	}
}

func TestTokenFileFollowsUpdates(t *testing.T) {
	h1, h2 := protocol.HashToken("one"), protocol.HashToken("two")
	d := newDownwardFile(t, map[string]string{"doppel.dev/port": "7463"})
	if _, err := OpenTokenFile(filepath.Join(d.dir, "missing"), nil); err == nil {
		t.Error("a missing token file was accepted")
	}
	f, err := OpenTokenFile(d.path(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Hashes(); len(got) != 0 {
		t.Errorf("hashes %v before any token annotation", got)
	}
	d.write(t, map[string]string{"doppel.dev/port": "7463", h1.Annotation(): h1.String()})
	if got := f.Hashes(); !slices.Equal(got, []protocol.TokenHash{h1}) {
		t.Errorf("after one join: %v", got)
	}
	d.write(t, map[string]string{"doppel.dev/port": "7463", h1.Annotation(): h1.String(), h2.Annotation(): h2.String()})
	if got := f.Hashes(); len(got) != 2 || !slices.Contains(got, h2) {
		t.Errorf("after two joins: %v", got)
	}
	// A file that cannot be read keeps what was read before.
	os.RemoveAll(filepath.Join(d.dir, "..data"))
	if got := f.Hashes(); len(got) != 2 {
		t.Errorf("unreadable file: %v", got)
	}
}
