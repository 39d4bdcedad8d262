package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestDepsOfDynamicBinary(t *testing.T) {
	if !isELF("/bin/ls") {
		t.Skip("no ELF /bin/ls on this machine")
	}
	deps, err := newELFResolver(io.Discard).deps("/bin/ls")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(deps, "/lib64/ld-linux-x86-64.so.2") {
		t.Errorf("deps of /bin/ls = %q, want the ELF interpreter /lib64/ld-linux-x86-64.so.2", deps)
	}
	var libc bool
	for _, d := range deps {
		libc = libc || filepath.Base(d) == "libc.so.6"
	}
	if !libc {
		t.Errorf("deps of /bin/ls = %q, want libc.so.6", deps)
	}
}

func TestDepsOfStaticAndNonELF(t *testing.T) {
	r := newELFResolver(io.Discard)
	text := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(text, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if deps, err := r.deps(text); err != nil || deps != nil {
		t.Errorf("deps of a script = %q, %v", deps, err)
	}
	// Debian's ldconfig is static-pie: no interpreter, nothing needed.
	if isELF("/sbin/ldconfig") {
		if deps, err := r.deps("/sbin/ldconfig"); err != nil || len(deps) != 0 {
			t.Errorf("deps of static /sbin/ldconfig = %q, %v", deps, err)
		}
	}
}

// TestDepsRunpathOrigin builds a program whose library sits next to it
// and is found only through DT_RUNPATH=$ORIGIN/../lib.
func TestDepsRunpathOrigin(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler")
	}
	dir := t.TempDir()
	for _, d := range []string{"lib", "bin"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	lib := filepath.Join(dir, "lib", "libdoppeltest.so.1")
	prog := filepath.Join(dir, "bin", "prog")
	for _, args := range [][]string{
		{"-shared", "-fPIC", "-Wl,-soname,libdoppeltest.so.1", "-o", lib, write("lib.c", "int f(void){return 1;}\n")},
		{"-o", prog, write("main.c", "int f(void);int main(void){return f();}\n"), lib, "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib"},
	} {
		if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
			t.Fatalf("cc %q: %v\n%s", args, err, out)
		}
	}
	deps, err := newELFResolver(io.Discard).deps(prog)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(deps, filepath.Join(dir, "lib", "libdoppeltest.so.1")) {
		t.Errorf("deps = %q, want the $ORIGIN library", deps)
	}

	// Without the library the error names it and says what to do.
	if err := os.Remove(lib); err != nil {
		t.Fatal(err)
	}
	_, err = newELFResolver(io.Discard).deps(prog)
	if err == nil || !strings.Contains(err.Error(), "needs libdoppeltest.so.1") || !strings.Contains(err.Error(), "install") {
		t.Errorf("missing library error = %v", err)
	}
}

func TestReadLDSOConf(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"ld.so.conf":    "# comment\n/opt/first\ninclude conf.d/*.conf\n/opt/last # trailing\n",
		"conf.d/b.conf": "/opt/b\n",
		"conf.d/a.conf": "/opt/a/\n\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := readLDSOConf(filepath.Join(dir, "ld.so.conf"), map[string]bool{})
	want := []string{"/opt/first", "/opt/a", "/opt/b", "/opt/last"}
	if !slices.Equal(got, want) {
		t.Errorf("readLDSOConf = %q, want %q", got, want)
	}
}

func TestExpandPaths(t *testing.T) {
	got := expandPaths([]string{"$ORIGIN/../lib:/opt/x", "${ORIGIN}/y:$LIB/z"}, "/app/bin")
	want := []string{"/app/lib", "/opt/x", "/app/bin/y"}
	if !slices.Equal(got, want) {
		t.Errorf("expandPaths = %q, want %q", got, want)
	}
}
