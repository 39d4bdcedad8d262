package main

import (
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestDebFilesInstalled(t *testing.T) {
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		t.Skip("not a Debian host")
	}
	files, err := debFiles("dash", io.Discard)
	if err != nil {
		t.Skipf("dash not installed: %v", err)
	}
	if !slices.Contains(files, "/bin/dash") {
		t.Errorf("dash files = %q, want /bin/dash", files)
	}
	for _, f := range files {
		if skipDebPath(f) || f == "/bin" || f == "/usr/share" {
			t.Errorf("dash files include %s", f)
		}
	}
}

func TestDebFilesNotInstalled(t *testing.T) {
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		t.Skip("not a Debian host")
	}
	_, err := debFiles("doppel-no-such-package", io.Discard)
	if err == nil || !strings.Contains(err.Error(), "apt-get install doppel-no-such-package") {
		t.Errorf("error = %v, want an apt-get install hint", err)
	}
}

func TestFilterDebList(t *testing.T) {
	list := strings.Join([]string{
		"/.", "/bin", "/bin/sh",
		"package diverts others to: /bin/sh.distrib",
		"/usr/share/doc/dash/copyright", "/usr/share/man/man1/dash.1.gz",
		"/usr/share/locale/de/LC_MESSAGES/x.mo",
		"/doppel/missing/file",
	}, "\n")
	var warn strings.Builder
	got := filterDebList("x", []byte(list), &warn)
	if !slices.Equal(got, []string{"/bin/sh"}) {
		t.Errorf("filterDebList = %q, want [/bin/sh]", got)
	}
	if !strings.Contains(warn.String(), "/doppel/missing/file") {
		t.Errorf("no warning about the missing file: %q", warn.String())
	}
}
