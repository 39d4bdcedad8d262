package kube

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/rest"
)

func TestSessionToken(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	c := &Client{Config: &rest.Config{Host: "https://10.250.0.1:6443"}}
	a := &Target{Pod: "a", PodUID: "uid-a"}
	b := &Target{Pod: "b", PodUID: "uid-b"}
	ta := c.SessionToken(a)
	if len(ta) != 64 || ta != c.SessionToken(a) {
		t.Fatalf("tokens of one target differ or are malformed: %q", ta)
	}
	if c.SessionToken(b) == ta {
		t.Error("two targets got the same token")
	}
	other := &Client{Config: &rest.Config{Host: "https://elsewhere:6443"}}
	if other.SessionToken(a) == ta {
		t.Error("two clusters got the same token")
	}
	if first, second := c.SessionToken(&Target{}), c.SessionToken(&Target{}); first == second {
		t.Error("targetless tokens are not random")
	}
	path, _ := sessionKeyFile()
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file %s: %v %v", path, st, err)
	}
	// A key others can read is not used: tokens become random.
	os.Chmod(path, 0o644)
	if first, second := c.SessionToken(a), c.SessionToken(a); first == second {
		t.Error("a readable key file was used")
	}
	os.Chmod(path, 0o600)
	if c.SessionToken(a) != ta {
		t.Error("the key changed")
	}
	if matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".session-key-*")); len(matches) != 0 {
		t.Errorf("temporary files left: %v", matches)
	}
}
