package cli

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	other := filepath.Join(dir, "other")
	for _, d := range []string{bin, other} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(path string, mode os.FileMode) {
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(bin, "tool"), 0o755)
	write(filepath.Join(other, "tool"), 0o755)
	write(filepath.Join(bin, "data"), 0o644)
	os.Mkdir(filepath.Join(other, "dir"), 0o755)
	env := []string{"PATH=/nowhere", "HOME=/root", "PATH=" + bin + ":" + other}

	for _, tc := range []struct{ name, want string }{
		{"tool", filepath.Join(bin, "tool")}, // the first PATH entry wins; the last PATH= counts
		{"./relative/x", "./relative/x"},     // a slash: the launcher's to run
		{"/abs/x", "/abs/x"},
	} {
		if got, err := lookPath(tc.name, env); err != nil || got != tc.want {
			t.Errorf("lookPath(%q) = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	for _, name := range []string{"missing", "data", "dir"} {
		if got, err := lookPath(name, env); err == nil {
			t.Errorf("lookPath(%q) = %q, want an error", name, got)
		} else if err.Error() != name+": command not found" {
			t.Errorf("lookPath(%q): %v", name, err)
		}
	}
	// An empty PATH entry is the working directory.
	wd, _ := os.Getwd()
	t.Cleanup(func() { os.Chdir(wd) })
	os.Chdir(bin)
	if got, err := lookPath("tool", []string{"PATH=" + other + "-none:"}); err != nil || got != "./tool" {
		t.Errorf("empty PATH entry: %q, %v", got, err)
	}
}
