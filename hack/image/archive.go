package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// checkTag rejects references that a docker-archive cannot carry.
func checkTag(ref string) error {
	if _, err := name.NewTag(ref); err != nil {
		return fmt.Errorf("bad -tag %q: %v (want NAME[:TAG], e.g. doppel-agent:v0.1.0 or registry.k8s.io/pause:3.10.1; digests are not allowed)", ref, err)
	}
	return nil
}

// writeArchive writes img under all tags as a docker-archive tarball. It
// goes through a temporary file so a failed build never leaves a
// truncated archive for docker load or ctr to choke on.
func writeArchive(img v1.Image, tags []string, out string) error {
	refs := map[name.Reference]v1.Image{}
	for _, t := range tags {
		tag, err := name.NewTag(t)
		if err != nil {
			return err
		}
		refs[tag] = img
	}
	if dir := filepath.Dir(out); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("-out %s: %w", out, err)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return fmt.Errorf("-out %s: %w", out, err)
	}
	defer os.Remove(tmp.Name())
	if err := writeSorted(refs, tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}

// printSummary reports what was built; sizes in bytes and MiB so size
// budgets are easy to check.
func printSummary(w io.Writer, img v1.Image, tags []string, out string, stats layerStats) error {
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	id, err := img.ConfigName()
	if err != nil {
		return err
	}
	var archive int64
	if fi, err := os.Stat(out); err == nil {
		archive = fi.Size()
	}
	fmt.Fprintf(w, "wrote %s\n", out)
	for _, t := range tags {
		fmt.Fprintf(w, "  tag          %s\n", t)
	}
	// ctr import writes its own manifest, so containerd shows another
	// digest; the image id (config digest) is the same everywhere.
	fmt.Fprintf(w, "  digest       %s (manifest)\n", digest)
	fmt.Fprintf(w, "  image id     %s (config; crictl/docker IMAGE ID)\n", id)
	fmt.Fprintf(w, "  entries      %d\n", stats.entries)
	fmt.Fprintf(w, "  uncompressed %d bytes (%.2f MiB)\n", stats.uncompressed, mb(stats.uncompressed))
	fmt.Fprintf(w, "  compressed   %d bytes (%.2f MiB)\n", stats.compressed, mb(stats.compressed))
	fmt.Fprintf(w, "  archive      %d bytes (%.2f MiB)\n", archive, mb(archive))
	return nil
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }

// writeSorted is tarball.MultiRefWrite with the RepoTags of manifest.json
// sorted: go-containerregistry lists them in map order, which would make
// archives with several tags differ from run to run.
func writeSorted(refs map[name.Reference]v1.Image, w io.Writer) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarball.MultiRefWrite(refs, pw)) }()
	defer pr.Close() // unblocks the writer if copying fails

	tr, tw := tar.NewReader(pr), tar.NewWriter(w)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return tw.Close()
		}
		if err != nil {
			return err
		}
		var body io.Reader = tr
		if hdr.Name == "manifest.json" {
			var m tarball.Manifest
			if err := json.NewDecoder(tr).Decode(&m); err != nil {
				return err
			}
			for _, d := range m {
				sort.Strings(d.RepoTags)
			}
			b, err := json.Marshal(m)
			if err != nil {
				return err
			}
			hdr.Size, body = int64(len(b)), bytes.NewReader(b)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, body); err != nil {
			return err
		}
	}
}
