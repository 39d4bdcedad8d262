package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strings"
)

// debSkip are package paths an image does not need.
var debSkip = []string{"/usr/share/doc", "/usr/share/man", "/usr/share/locale"}

// debFiles lists the regular files and symlinks that the installed Debian
// package pkg put on this machine, in dpkg's order.
func debFiles(pkg string, warn io.Writer) ([]string, error) {
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		return nil, fmt.Errorf("-deb %s: dpkg-query not found; -deb works on Debian-based hosts only", pkg)
	}
	status, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", pkg).Output()
	if err != nil || strings.TrimSpace(string(status)) != "installed" {
		return nil, fmt.Errorf("-deb %s: package %s is not installed on this machine; run: apt-get install %s", pkg, pkg, pkg)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("dpkg-query", "-L", pkg)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("-deb %s: dpkg-query -L: %v: %s", pkg, err, strings.TrimSpace(stderr.String()))
	}
	return filterDebList(pkg, out, warn), nil
}

// filterDebList keeps the non-directory paths of a dpkg -L listing that
// exist here, dropping docs and diversion notes ("diverted by ...").
func filterDebList(pkg string, list []byte, warn io.Writer) []string {
	var listed []string
	sc := bufio.NewScanner(bytes.NewReader(list))
	for sc.Scan() {
		if p := sc.Text(); strings.HasPrefix(p, "/") && p != "/." {
			listed = append(listed, p)
		}
	}
	// dpkg lists every directory of a package, and before its contents.
	// Recognizing directories that way, not by lstat, matters on merged-/usr
	// hosts where the listed /bin is a symlink to usr/bin.
	isDir := map[string]bool{}
	for _, p := range listed {
		for d := path.Dir(p); d != "/" && !isDir[d]; d = path.Dir(d) {
			isDir[d] = true
		}
	}
	var files []string
	for _, p := range listed {
		if isDir[p] || skipDebPath(p) {
			continue
		}
		fi, err := os.Lstat(p)
		if err != nil {
			// Usually a path excluded by dpkg's path-exclude config.
			fmt.Fprintf(warn, "warning: -deb %s: %s is listed but missing here, skipping it\n", pkg, p)
			continue
		}
		if fi.IsDir() {
			continue // an empty directory; parents are created as needed
		}
		files = append(files, p)
	}
	return files
}

func skipDebPath(p string) bool {
	for _, s := range debSkip {
		if p == s || strings.HasPrefix(p, s+"/") {
			return true
		}
	}
	return false
}
