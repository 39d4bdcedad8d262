package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"syscall"
)

type kind int

const (
	kindDir kind = iota
	kindFile
	kindSymlink
)

func (k kind) String() string {
	return [...]string{"directory", "file", "symlink"}[k]
}

// entry is one path of the image filesystem.
type entry struct {
	kind     kind
	mode     fs.FileMode // permission bits plus setuid/setgid/sticky
	uid, gid int
	src      string // host file to copy, for kindFile
	data     []byte // generated content, for kindFile without src
	link     string // target, for kindSymlink
	hostID   fileID // lets identical host files become tar hardlinks
}

// fileID identifies a host file so that two image paths of one inode (e.g.
// /bin/x and /usr/bin/x on a merged-/usr host) are stored once.
type fileID struct{ dev, ino uint64 }

// tree is the image filesystem being assembled, keyed by clean absolute
// image path. Everything is owned by root unless set otherwise on purpose.
type tree struct {
	entries map[string]*entry
	warn    io.Writer
}

func newTree(warn io.Writer) *tree {
	return &tree{entries: map[string]*entry{}, warn: warn}
}

// put stores e at p, creating missing parents. A weak put (automatic
// additions: packages, libraries) never replaces what is already there, so
// explicit -add wins over them whatever the order.
func (t *tree) put(p string, e *entry, weak bool) error {
	if err := t.ensureParents(p); err != nil {
		return err
	}
	old := t.entries[p]
	if old == nil {
		t.entries[p] = e
		return nil
	}
	if weak {
		return nil
	}
	if (old.kind == kindDir) != (e.kind == kindDir) {
		return fmt.Errorf("%s is already a %s in the image, cannot make it a %s; drop one of the two additions", p, old.kind, e.kind)
	}
	t.entries[p] = e
	return nil
}

// ensureParents creates the missing ancestors of p as root-owned 0755
// directories, like an unpacking tar would.
func (t *tree) ensureParents(p string) error {
	if p == "/" {
		return fmt.Errorf("cannot add the root directory itself; add paths below /")
	}
	dir := path.Dir(p)
	if dir == "/" {
		return nil
	}
	if err := t.ensureParents(dir); err != nil {
		return err
	}
	switch e := t.entries[dir]; {
	case e == nil:
		t.entries[dir] = &entry{kind: kindDir, mode: 0o755}
	case e.kind != kindDir:
		return fmt.Errorf("cannot add %s: its parent %s is a %s in the image, not a directory", p, dir, e.kind)
	}
	return nil
}

// exclude drops the paths matching the glob and everything below them,
// reporting how many went.
func (t *tree) exclude(glob string) int {
	n := 0
	for p := range t.entries {
		for q := p; q != "/"; q = path.Dir(q) {
			if ok, _ := path.Match(glob, q); ok {
				delete(t.entries, p)
				n++
				break
			}
		}
	}
	return n
}

// mkdir creates dir, or (unless weak) sets the mode of an existing one
// while keeping its owner.
func (t *tree) mkdir(dir string, mode fs.FileMode, weak bool) error {
	if e := t.entries[dir]; e != nil && e.kind == kindDir {
		if !weak {
			e.mode = mode
		}
		return nil
	}
	return t.put(dir, &entry{kind: kindDir, mode: mode}, weak)
}

// chown sets the owner of an existing path.
func (t *tree) chown(p string, uid, gid int) {
	if e := t.entries[p]; e != nil {
		e.uid, e.gid = uid, gid
	}
}

// addData stores generated content.
func (t *tree) addData(p string, data []byte, mode fs.FileMode, weak bool) error {
	return t.put(p, &entry{kind: kindFile, mode: mode, data: data}, weak)
}

// addHost adds a host path at dst, recursing into directories.
func (t *tree) addHost(dst, src string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return fmt.Errorf("-add %s: %w (check the path; relative paths are relative to %s)", src, err, cwd())
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		if abs, _ := filepath.Abs(src); filepath.ToSlash(abs) == dst {
			return t.mirror(dst, src, false)
		}
		// Copy what the link points at: a link at a new path could dangle.
		if fi, err = os.Stat(src); err != nil {
			return fmt.Errorf("-add %s: symlink target: %w", src, err)
		}
	}
	if !fi.IsDir() {
		return t.addOne(dst, src, fi, false)
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("-add %s: %w", src, err)
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("-add %s: %w", src, err)
		}
		return t.addOne(path.Join(dst, filepath.ToSlash(rel)), p, fi, false)
	})
}

// addOne adds a single host file, directory (without contents) or symlink
// (verbatim) described by fi.
func (t *tree) addOne(dst, src string, fi fs.FileInfo, weak bool) error {
	mode := fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	switch {
	case fi.Mode().IsRegular():
		e := &entry{kind: kindFile, mode: mode, src: src}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			e.hostID = fileID{dev: uint64(st.Dev), ino: st.Ino}
		}
		return t.put(dst, e, weak)
	case fi.IsDir():
		return t.put(dst, &entry{kind: kindDir, mode: mode}, weak)
	case fi.Mode()&fs.ModeSymlink != 0:
		link, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return t.put(dst, &entry{kind: kindSymlink, mode: 0o777, link: link}, weak)
	default:
		fmt.Fprintf(t.warn, "warning: skipping %s: %s files cannot go into an image\n", src, fi.Mode().Type())
		return nil
	}
}

// mirror adds host path src at image path dst and, if it is a symlink,
// also the chain of its targets, so the link still resolves in the image.
// Targets are resolved the way they will be in the image (lexically from
// dst), but read from where the host really keeps them: on a merged-/usr
// host /lib64/x -> ../lib/y is read from /usr/lib/y yet lands at /lib/y.
func (t *tree) mirror(dst, src string, weak bool) error {
	for hops := 0; ; hops++ {
		if hops > 40 {
			return fmt.Errorf("%s: too many levels of symlinks", src)
		}
		fi, err := os.Lstat(src)
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			// A directory only as itself: its contents are not wanted here.
			return t.addOne(dst, src, fi, weak)
		}
		if old, ok := t.entries[dst]; ok && weak && old.kind != kindSymlink {
			return nil // something explicit already sits here
		}
		if err := t.addOne(dst, src, fi, weak); err != nil {
			return err
		}
		link, err := os.Readlink(src)
		if err != nil {
			return err
		}
		from := dst
		if path.IsAbs(link) {
			dst, src = path.Clean(link), link
		} else {
			realDir, err := filepath.EvalSymlinks(filepath.Dir(src))
			if err != nil {
				return err
			}
			dst, src = path.Join(path.Dir(dst), link), filepath.Join(realDir, link)
		}
		if _, err := os.Lstat(src); err != nil {
			fmt.Fprintf(t.warn, "warning: symlink %s points to %s, which does not exist on this machine; it will dangle in the image\n", from, link)
			return nil
		}
	}
}

func cwd() string {
	d, err := os.Getwd()
	if err != nil {
		return "the current directory"
	}
	return d
}
