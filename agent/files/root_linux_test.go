//go:build linux

package files

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// testRoot builds a small container root in a temp dir. The host's
// /etc/passwd exists outside it: no resolution may reach it.
func testRoot(t *testing.T) *Root {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "etc/conf.d"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "etc/hostname"), []byte("pod-1\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("pod-user:x:1000\n"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "etc/conf.d/b"), nil, 0o644))
	must(os.Symlink("/etc/hostname", filepath.Join(dir, "etc/abs-link")))
	must(os.Symlink("../../../../../../etc/passwd", filepath.Join(dir, "etc/escape")))
	must(os.Symlink("/proc/self/root/etc/passwd", filepath.Join(dir, "etc/magic")))
	must(os.Symlink("conf.d", filepath.Join(dir, "etc/dir-link")))
	must(os.Symlink("nowhere", filepath.Join(dir, "etc/dangling")))
	must(unix.Mkfifo(filepath.Join(dir, "etc/fifo"), 0o644))
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(err)
	t.Cleanup(func() { unix.Close(fd) })
	return NewRoot(fd)
}

func TestStatStaysInRoot(t *testing.T) {
	r := testRoot(t)
	tests := []struct {
		name, path string
		size       int64
		mode       uint32
		err        error
	}{
		{"file", "/etc/hostname", 6, unix.S_IFREG, nil},
		{"root", "/", 0, unix.S_IFDIR, nil},
		{"absolute symlink resolves in the root", "/etc/abs-link", 6, unix.S_IFREG, nil},
		{"dotdot symlink stops at the root", "/etc/escape", 16, unix.S_IFREG, nil},
		{"dotdot path stops at the root", "/../../etc/passwd", 16, unix.S_IFREG, nil},
		{"symlinked dir", "/etc/dir-link/b", 0, unix.S_IFREG, nil},
		{"missing", "/etc/none", 0, 0, fs.ErrNotExist},
		{"dangling", "/etc/dangling", 0, 0, fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := r.Stat(tt.path)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode&unix.S_IFMT != tt.mode || (tt.mode == unix.S_IFREG && st.Size != tt.size) {
				t.Fatalf("mode %o size %d", st.Mode, st.Size)
			}
		})
	}
}

func TestMagicLinkNeverFollowed(t *testing.T) {
	// In a container root with its own /proc, /proc/self/root is a magic
	// link to the agent's root (or the node's): it must not resolve.
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	r := NewRoot(fd)
	for _, p := range []string{"/proc/self/root/etc", "/proc/self/cwd"} {
		if _, err := r.Stat(p); !errors.Is(err, unix.ELOOP) {
			t.Errorf("Stat(%s) = %v, want ELOOP", p, err)
		}
	}
	if _, err := r.Stat("/proc/self/status"); err != nil {
		t.Errorf("plain procfs file: %v", err)
	}
}

func TestLstatReadlink(t *testing.T) {
	r := testRoot(t)
	st, err := r.Lstat("/etc/abs-link")
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Fatalf("Lstat = %o, %v", st.Mode, err)
	}
	if target, err := r.Readlink("/etc/abs-link"); err != nil || target != "/etc/hostname" {
		t.Errorf("Readlink = %q, %v", target, err)
	}
	if target, err := r.Readlink("/etc/dangling"); err != nil || target != "nowhere" {
		t.Errorf("Readlink(dangling) = %q, %v", target, err)
	}
	if _, err := r.Readlink("/etc/hostname"); !errors.Is(err, unix.EINVAL) {
		t.Errorf("Readlink(file) = %v", err)
	}
	// The link's own directory may be reached through a symlink.
	if st, err := r.Lstat("/etc/dir-link/b"); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("Lstat through a dir symlink: %v", err)
	}
}

func TestOpenAndReadFile(t *testing.T) {
	r := testRoot(t)
	f, st, err := r.Open("/etc/abs-link")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(f)
	f.Close()
	if string(data) != "pod-1\n" || st.Size != 6 {
		t.Errorf("content %q size %d", data, st.Size)
	}
	if _, _, err := r.Open("/etc"); !errors.Is(err, unix.EISDIR) {
		t.Errorf("Open(dir) = %v", err)
	}
	// A FIFO would block the open: refused without opening it.
	if _, _, err := r.Open("/etc/fifo"); !errors.Is(err, unix.EINVAL) {
		t.Errorf("Open(fifo) = %v", err)
	}
	if data, err := r.ReadFile("/etc/escape", 1<<10); err != nil || string(data) != "pod-user:x:1000\n" {
		t.Errorf("ReadFile(escape) = %q, %v", data, err)
	}
	if _, err := r.ReadFile("/etc/passwd", 4); !errors.Is(err, unix.EFBIG) {
		t.Errorf("ReadFile over the limit: %v", err)
	}
}

func TestReadDir(t *testing.T) {
	r := testRoot(t)
	entries, err := r.ReadDir("/etc")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name string
		typ  uint32
	}{
		{"abs-link", unix.S_IFLNK}, {"conf.d", unix.S_IFDIR}, {"dangling", unix.S_IFLNK},
		{"dir-link", unix.S_IFLNK}, {"escape", unix.S_IFLNK}, {"fifo", unix.S_IFIFO},
		{"hostname", unix.S_IFREG}, {"magic", unix.S_IFLNK}, {"passwd", unix.S_IFREG},
	}
	if len(entries) != len(want) {
		t.Fatalf("entries %+v", entries)
	}
	for i, w := range want {
		e := entries[i]
		if e.Name != w.name || (e.Type != 0 && e.Type != w.typ) || e.Ino == 0 {
			t.Errorf("entry %d = %+v, want %s type %o", i, e, w.name, w.typ)
		}
	}
	if entries, err := r.ReadDir("/etc/dir-link"); err != nil || len(entries) != 1 || entries[0].Name != "b" {
		t.Errorf("ReadDir through a symlink = %+v, %v", entries, err)
	}
	if _, err := r.ReadDir("/etc/hostname"); !errors.Is(err, unix.ENOTDIR) {
		t.Errorf("ReadDir(file) = %v", err)
	}
}

func TestReadDirMany(t *testing.T) {
	dir := t.TempDir()
	for i := range 300 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%c%d", 'a'+i%26, i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	entries, err := NewRoot(fd).ReadDir("/")
	if err != nil || len(entries) != 300 {
		t.Fatalf("%d entries, %v", len(entries), err)
	}
	for i := 1; i < len(entries); i++ {
		if entries[i-1].Name >= entries[i].Name {
			t.Fatalf("not sorted at %d", i)
		}
	}
}

// Without openat2 (Linux before 5.6, or a seccomp profile that refuses
// it) the resolution walks the path itself, with the same results.
func TestWithoutOpenat2(t *testing.T) {
	haveOpenat2.Store(false)
	t.Cleanup(func() { haveOpenat2.Store(true) })
	for name, test := range map[string]func(*testing.T){
		"StatStaysInRoot": TestStatStaysInRoot, "MagicLinkNeverFollowed": TestMagicLinkNeverFollowed,
		"LstatReadlink": TestLstatReadlink, "OpenAndReadFile": TestOpenAndReadFile,
		"ReadDir": TestReadDir, "ReadDirMany": TestReadDirMany,
	} {
		t.Run(name, test)
	}
}

// ".." after a symlink is the parent of where the link leads, and a
// trailing slash needs a directory: as the container itself sees them.
func TestDotDotIsPhysical(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc/conf.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc/hostname"), []byte("pod-1\n"), 0o644)
	os.Symlink("/etc/conf.d", filepath.Join(dir, "cfg"))
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	r := NewRoot(fd)
	t.Cleanup(func() { haveOpenat2.Store(true) })
	for _, openat2 := range []bool{true, false} {
		haveOpenat2.Store(openat2)
		if st, err := r.Stat("/cfg/../hostname"); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			t.Errorf("openat2=%v: Stat(/cfg/../hostname) = %v, want /etc/hostname", openat2, err)
		}
		if _, err := r.Stat("/etc/hostname/"); !errors.Is(err, unix.ENOTDIR) {
			t.Errorf("openat2=%v: Stat(/etc/hostname/) = %v, want ENOTDIR", openat2, err)
		}
	}
}
