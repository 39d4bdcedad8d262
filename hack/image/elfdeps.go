package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// defaultLibDirs are searched after ld.so.conf, as the loader does.
var defaultLibDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// loaderDirs are the ones glibc searches with no /etc/ld.so.cache, which
// images built here do not have ("ld.so --help" lists them).
var loaderDirs = map[string]bool{
	"/lib/x86_64-linux-gnu": true, "/usr/lib/x86_64-linux-gnu": true,
	"/lib": true, "/usr/lib": true, "/lib64": true, "/usr/lib64": true,
}

// elfResolver finds the shared libraries a dynamic ELF file needs, the
// way the dynamic loader on this machine would.
type elfResolver struct {
	dirs  []string            // ld.so.conf then defaultLibDirs
	infos map[string]*elfInfo // parsed objects, shared by all deps calls
	warn  io.Writer
}

func newELFResolver(warn io.Writer) *elfResolver {
	dirs := readLDSOConf("/etc/ld.so.conf", map[string]bool{})
	dirs = append(dirs, defaultLibDirs...)
	return &elfResolver{dirs: uniq(dirs), infos: map[string]*elfInfo{}, warn: warn}
}

// elfInfo is what the loader reads from one object.
type elfInfo struct {
	class   elf.Class
	machine elf.Machine
	interp  string
	needed  []string
	rpath   []string // DT_RPATH, only honoured without DT_RUNPATH
	runpath []string
}

// isELF reports whether the host file starts with the ELF magic.
func isELF(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [4]byte
	_, err = io.ReadFull(f, magic[:])
	return err == nil && bytes.Equal(magic[:], []byte(elf.ELFMAG))
}

func readELF(p string) (*elfInfo, error) {
	f, err := elf.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info := &elfInfo{class: f.Class, machine: f.Machine}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			b, err := io.ReadAll(prog.Open())
			if err != nil {
				return nil, fmt.Errorf("%s: reading PT_INTERP: %w", p, err)
			}
			info.interp = string(bytes.TrimRight(b, "\x00"))
		}
	}
	if f.Section(".dynamic") == nil {
		if dynamicProg(f) != nil {
			// debug/elf reads the dynamic table through section headers.
			return nil, fmt.Errorf("%s is dynamic but has no section headers to read its needs from", p)
		}
		return info, nil // static
	}
	if info.needed, err = f.DynString(elf.DT_NEEDED); err != nil {
		return nil, err
	}
	rpath, err := f.DynString(elf.DT_RPATH)
	if err != nil {
		return nil, err
	}
	runpath, err := f.DynString(elf.DT_RUNPATH)
	if err != nil {
		return nil, err
	}
	origin := filepath.Dir(p)
	info.rpath = expandPaths(rpath, origin)
	info.runpath = expandPaths(runpath, origin)
	return info, nil
}

func dynamicProg(f *elf.File) *elf.Prog {
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_DYNAMIC {
			return prog
		}
	}
	return nil
}

// expandPaths splits colon lists and substitutes $ORIGIN; entries using
// $LIB or $PLATFORM are dropped, they do not occur in Debian's packages.
func expandPaths(lists []string, origin string) []string {
	var out []string
	for _, l := range lists {
		for _, d := range strings.Split(l, ":") {
			d = strings.ReplaceAll(d, "${ORIGIN}", origin)
			d = strings.ReplaceAll(d, "$ORIGIN", origin)
			if d == "" || strings.Contains(d, "$") {
				continue
			}
			out = append(out, filepath.Clean(d))
		}
	}
	return out
}

// deps returns the host paths of everything p needs at load time: the
// interpreter and the transitive closure of DT_NEEDED, sorted. Static
// files and non-ELF files need nothing.
func (r *elfResolver) deps(p string) ([]string, error) {
	if !isELF(p) {
		return nil, nil
	}
	if _, err := r.info(p); err != nil {
		// E.g. a truncated or foreign object shipped as data; the loader
		// will never map it, so its needs do not matter.
		fmt.Fprintf(r.warn, "warning: %s looks like ELF but cannot be parsed (%v); not adding libraries for it\n", p, err)
		return nil, nil
	}
	found := map[string]bool{}
	if err := r.walk(p, nil, found); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(found))
	for f := range found {
		out = append(out, f)
	}
	sort.Strings(out)
	return out, nil
}

// walk resolves the needs of object p; inherited is the DT_RPATH of the
// objects that loaded it, which the loader also searches.
func (r *elfResolver) walk(p string, inherited []string, found map[string]bool) error {
	info, err := r.info(p)
	if err != nil {
		return fmt.Errorf("reading ELF %s: %w", p, err)
	}
	if info.interp != "" && !found[info.interp] {
		if _, err := os.Stat(info.interp); err != nil {
			return fmt.Errorf("%s wants the ELF interpreter %s, which is missing here: %w", p, info.interp, err)
		}
		found[info.interp] = true
	}
	var search []string
	if len(info.runpath) == 0 {
		inherited = append(append([]string(nil), info.rpath...), inherited...)
		search = append(search, inherited...)
	} else {
		inherited = nil // DT_RUNPATH stops DT_RPATH inheritance
		search = append(search, info.runpath...)
	}
	search = append(search, r.dirs...)
	for _, name := range info.needed {
		lib, err := r.find(name, search, info)
		if err != nil {
			return fmt.Errorf("%s needs %s: %w", p, name, err)
		}
		if found[lib] {
			continue
		}
		found[lib] = true
		if !loaderDirs[filepath.Dir(lib)] && !slices.Contains(info.runpath, filepath.Dir(lib)) && !slices.Contains(inherited, filepath.Dir(lib)) {
			fmt.Fprintf(r.warn, "warning: %s was found via ld.so.conf in %s, which the loader in the image will not search; set -env LD_LIBRARY_PATH=%s\n", name, filepath.Dir(lib), filepath.Dir(lib))
		}
		if err := r.walk(lib, inherited, found); err != nil {
			return err
		}
	}
	return nil
}

// info parses p once per build.
func (r *elfResolver) info(p string) (*elfInfo, error) {
	if info := r.infos[p]; info != nil {
		return info, nil
	}
	info, err := readELF(p)
	if err != nil {
		return nil, err
	}
	r.infos[p] = info
	return info, nil
}

// find locates a DT_NEEDED name, skipping libraries of another class or
// machine as the loader does (e.g. i386 files in /usr/lib).
func (r *elfResolver) find(name string, search []string, want *elfInfo) (string, error) {
	if strings.Contains(name, "/") {
		if _, err := os.Stat(name); err != nil {
			return "", err
		}
		return name, nil
	}
	for _, d := range search {
		cand := filepath.Join(d, name)
		if _, err := os.Stat(cand); err != nil {
			continue
		}
		f, err := elf.Open(cand)
		if err != nil {
			continue
		}
		ok := f.Class == want.class && f.Machine == want.machine
		f.Close()
		if ok {
			return cand, nil
		}
	}
	return "", fmt.Errorf("not found in %s; install the Debian package that ships it (dpkg -S %s, or apt-file search %s)", strings.Join(search, ":"), name, name)
}

// readLDSOConf returns the directories of an ld.so.conf, following
// "include" globs in order.
func readLDSOConf(p string, visited map[string]bool) []string {
	if visited[p] {
		return nil
	}
	visited[p] = true
	f, err := os.Open(p)
	if err != nil {
		return nil // no ld.so.conf: the defaults still apply
	}
	defer f.Close()
	var dirs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, "include"):
			for _, pat := range strings.Fields(line)[1:] {
				if !filepath.IsAbs(pat) {
					pat = filepath.Join(filepath.Dir(p), pat)
				}
				matches, _ := filepath.Glob(pat)
				sort.Strings(matches)
				for _, m := range matches {
					dirs = append(dirs, readLDSOConf(m, visited)...)
				}
			}
		case strings.HasPrefix(line, "hwcap"):
		default:
			dirs = append(dirs, filepath.Clean(line))
		}
	}
	return dirs
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
