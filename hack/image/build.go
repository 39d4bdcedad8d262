package main

import (
	"fmt"
	"io"
	"io/fs"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// buildImage assembles the image filesystem and config from o.
// Precedence: -add beats -deb beats libraries (later additions of the
// weaker kinds never replace earlier ones); -exclude applies to -add and
// -deb only, so libraries something still needs are never dropped; -mkdir
// sets the final mode.
func buildImage(o *options, warn io.Writer) (v1.Image, layerStats, error) {
	t := newTree(warn)
	for _, a := range o.adds {
		if err := t.addHost(a.dst, a.src); err != nil {
			return nil, layerStats{}, err
		}
	}
	for _, pkg := range o.debs {
		files, err := debFiles(pkg, warn)
		if err != nil {
			return nil, layerStats{}, err
		}
		for _, f := range files {
			if err := t.mirror(f, f, true); err != nil {
				return nil, layerStats{}, fmt.Errorf("-deb %s: %w", pkg, err)
			}
		}
	}
	for _, x := range o.excludes {
		if t.exclude(x) == 0 {
			fmt.Fprintf(warn, "warning: -exclude %s matched nothing\n", x)
		}
	}
	if err := addLibraries(t, newELFResolver(warn)); err != nil {
		return nil, layerStats{}, err
	}
	if err := addAccounts(t, o.accounts); err != nil {
		return nil, layerStats{}, err
	}
	for _, m := range o.mkdirs {
		if err := t.mkdir(m.dir, unixMode(m.mode), false); err != nil {
			return nil, layerStats{}, fmt.Errorf("-mkdir %s: %w", m.dir, err)
		}
	}
	if o.workdir != "" {
		if err := t.mkdir(o.workdir, 0o755, true); err != nil {
			return nil, layerStats{}, fmt.Errorf("-workdir %s: %w", o.workdir, err)
		}
	}

	layer, stats, err := buildLayer(t)
	if err != nil {
		return nil, layerStats{}, err
	}
	img, err := mutate.ConfigFile(empty.Image, imageConfig(o))
	if err != nil {
		return nil, layerStats{}, err
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "hack/image"},
	})
	if err != nil {
		return nil, layerStats{}, err
	}
	return img, stats, nil
}

// addLibraries adds the interpreter and shared libraries of every host
// ELF file in the tree, each at its host path.
func addLibraries(t *tree, r *elfResolver) error {
	var srcs []string
	seen := map[string]bool{}
	for _, e := range t.entries {
		if e.kind == kindFile && e.src != "" && !seen[e.src] {
			seen[e.src] = true
			srcs = append(srcs, e.src)
		}
	}
	sort.Strings(srcs)
	for _, src := range srcs {
		libs, err := r.deps(src)
		if err != nil {
			return err
		}
		for _, lib := range libs {
			if err := t.mirror(lib, lib, true); err != nil {
				return fmt.Errorf("adding %s for %s: %w", lib, src, err)
			}
		}
	}
	return nil
}

// addAccounts writes /etc/passwd and /etc/group and creates home
// directories owned by their accounts, so services can write there.
func addAccounts(t *tree, accts []account) error {
	passwd, group := accountFiles(accts)
	for _, f := range []struct {
		path string
		data []byte
	}{{"/etc/passwd", passwd}, {"/etc/group", group}} {
		if _, ok := t.entries[f.path]; ok {
			if len(accts) > 0 {
				return fmt.Errorf("%s is both added and generated from -account; drop one", f.path)
			}
			continue // an added file wins when no accounts are asked for
		}
		if err := t.addData(f.path, f.data, 0o644, false); err != nil {
			return err
		}
	}
	if err := t.mkdir("/root", 0o700, true); err != nil {
		return err
	}
	for _, a := range accts {
		if a.home == "/" || a.home == "/nonexistent" {
			continue
		}
		if err := t.mkdir(a.home, 0o755, true); err != nil {
			return fmt.Errorf("-account %s: home: %w", a.name, err)
		}
		if t.entries[a.home].kind == kindDir {
			t.chown(a.home, a.uid, a.gid)
		}
	}
	return nil
}

// unixMode converts octal permission bits (with setuid/setgid/sticky) to
// Go's representation.
func unixMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}
