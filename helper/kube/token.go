package kube

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/doppel-dev/doppel/protocol"
)

// SessionToken returns the token a session on target presents to its
// agent. For a target pod (whose agent is shared) it is derived from a
// secret key of this user on this machine, the API server and the target
// pod's UID, so that every session of this user and machine on that pod
// presents the same token: once its hash is on the agent (in the Job's
// arguments, or as an annotation the kubelet has written into the
// agent's token file), a later session joining the agent is accepted at
// once instead of waiting about a second for the kubelet
// (docs/agent.md, "Shared agents"). Joining still patches the hash onto
// the agent pod every time, so every session needs the right to do so.
// Without a usable key (no cache directory, a key file others can read)
// and for targetless runs the token is random, as for an exclusive agent.
func (c *Client) SessionToken(target *Target) string {
	if target == nil || target.Targetless() || target.PodUID == "" {
		return protocol.NewToken()
	}
	key, err := sessionKey()
	if err != nil {
		return protocol.NewToken()
	}
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "doppel session token v1\x00%s\x00%s", c.Config.Host, target.PodUID)
	return hex.EncodeToString(m.Sum(nil))
}

// sessionKeyFile is the secret SessionToken derives tokens from, in the
// user's cache directory (a lost key only costs the next join its wait).
// It is as sensitive as the kubeconfig next to it: mode 0600, and a file
// with wider permissions or another owner is not used.
func sessionKeyFile() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "doppel", "session-key"), nil
}

func sessionKey() ([]byte, error) {
	path, err := sessionKeyFile()
	if err != nil {
		return nil, err
	}
	key, err := readKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	// Written aside and linked into place: of two sessions creating the key
	// at once, one links its key and both then read that one.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".session-key-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	b := make([]byte, 32)
	rand.Read(b)
	_, err = tmp.WriteString(hex.EncodeToString(b) + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	return readKey(path)
}

func readKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); !st.Mode().IsRegular() || st.Mode().Perm()&0o077 != 0 ||
		(ok && int(sys.Uid) != os.Getuid()) {
		return nil, fmt.Errorf("%s: not a private file of this user", path)
	}
	b := make([]byte, 128)
	n, _ := f.Read(b)
	key, err := hex.DecodeString(string(bytes.TrimSpace(b[:n])))
	if err != nil || len(key) < 32 {
		return nil, fmt.Errorf("%s: not a doppel session key", path)
	}
	return key, nil
}
