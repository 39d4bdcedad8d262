package main

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// criName is the name the CRI looks images up by: the fully qualified,
// docker-normalized reference (doppel-agent:v1 ->
// docker.io/library/doppel-agent:v1).
func criName(ref string) (string, error) {
	tag, err := name.NewTag(ref)
	if err != nil {
		return "", err
	}
	registry := tag.RegistryStr()
	if registry == name.DefaultRegistry { // go-containerregistry says index.docker.io
		registry = "docker.io"
	}
	return registry + "/" + tag.RepositoryStr() + ":" + tag.TagStr(), nil
}

// ctrRunner runs ctr with the given arguments and returns its stdout; a
// variable so tests can fake containerd.
var ctrRunner = func(args ...string) ([]byte, error) {
	if _, err := exec.LookPath("ctr"); err != nil {
		return nil, fmt.Errorf("ctr not found in PATH; run: apt-get install containerd")
	}
	var stderr bytes.Buffer
	cmd := exec.Command("ctr", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// importArchive loads the archive into containerd's k8s.io namespace (the
// one the CRI uses) and makes sure every tag is there under its CRI name.
func importArchive(socket, archive string, tags []string, w io.Writer) error {
	base := []string{"--address", socket, "-n", "k8s.io"}
	out, err := ctrRunner(append(base, "images", "import", "--all-platforms", archive)...)
	w.Write(out)
	if err != nil {
		return fmt.Errorf("-import %s: %w (is containerd running there?)", socket, err)
	}
	have, err := listImages(base)
	if err != nil {
		return err
	}
	for _, t := range tags {
		want, err := criName(t)
		if err != nil {
			return err
		}
		if !have[want] {
			// Older ctr keeps the archive's name verbatim; add the CRI one.
			if !have[t] {
				return fmt.Errorf("-import: after importing, containerd at %s has neither %s nor %s", socket, want, t)
			}
			if _, err := ctrRunner(append(base, "images", "tag", "--force", t, want)...); err != nil {
				return fmt.Errorf("-import: %w", err)
			}
			if have, err = listImages(base); err != nil {
				return err
			}
			if !have[want] {
				return fmt.Errorf("-import: tagged %s as %s but containerd does not list it", t, want)
			}
		}
		fmt.Fprintf(w, "imported %s\n", want)
	}
	return nil
}

func listImages(base []string) (map[string]bool, error) {
	out, err := ctrRunner(append(base, "images", "ls", "-q")...)
	if err != nil {
		return nil, fmt.Errorf("-import: %w", err)
	}
	have := map[string]bool{}
	for _, l := range strings.Fields(string(out)) {
		have[l] = true
	}
	return have, nil
}
