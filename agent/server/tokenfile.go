package server

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/doppel-dev/doppel/protocol"
)

// TokenFile is the agent's --token-file: the agent pod's annotations as
// the kubelet writes them into a downward API volume (one `key="value"`
// line per annotation, the value quoted as Go's %q does). Every
// "token.doppel.dev/…" annotation whose value is 64 hex digits is an
// accepted token hash: a session that joins a running agent patches its
// hash onto the agent pod, and the kubelet refreshes the file.
//
// Hashes reads the file again on every call (every hello): the file is a
// few hundred bytes, hellos are rare, and a hash is accepted as soon as
// the kubelet has written it, with no polling delay on top. The kubelet
// replaces the file by swapping a symlink, so a read sees either the old
// or the new content, never a mix.
type TokenFile struct {
	path string
	log  *slog.Logger

	mu   sync.Mutex
	last []protocol.TokenHash
}

// OpenTokenFile reads path once (it must exist and be readable: a typo in
// the pod spec should stop the agent at start, not refuse every joiner).
func OpenTokenFile(path string, log *slog.Logger) (*TokenFile, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &TokenFile{path: path, log: log}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	f.last = f.parse(data)
	log.Info("token file read", "path", path, "hashes", len(f.last))
	return f, nil
}

// Hashes returns the hashes the file holds now. When it cannot be read
// (it never should: the kubelet swaps it atomically), the last hashes
// read stay accepted.
func (f *TokenFile) Hashes() []protocol.TokenHash {
	data, err := os.ReadFile(f.path)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		f.log.Warn("cannot read the token file: keeping the hashes read before", "path", f.path, "err", err)
		return f.last
	}
	hashes := f.parse(data)
	if !slices.Equal(hashes, f.last) {
		f.log.Info("accepted token hashes changed", "path", f.path, "hashes", len(hashes), "before", len(f.last))
		f.last = hashes
	}
	return hashes
}

func (f *TokenFile) parse(data []byte) []protocol.TokenHash {
	hashes, bad := ParseTokenAnnotations(data)
	for _, b := range bad {
		f.log.Warn("ignoring a token annotation", "path", f.path, "annotation", b)
	}
	return hashes
}

// ParseTokenAnnotations returns the token hashes of a downward API
// annotations file, sorted, without duplicates, and the keys of
// "token.doppel.dev/" annotations it could not use (with why). Other
// annotations and lines that are not `key="value"` are ignored.
func ParseTokenAnnotations(data []byte) (hashes []protocol.TokenHash, bad []string) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20) // annotations total at most 256 KiB
	for sc.Scan() {
		key, quoted, ok := strings.Cut(sc.Text(), "=")
		if !ok || !strings.HasPrefix(key, protocol.TokenAnnotationPrefix) {
			continue
		}
		value, err := strconv.Unquote(quoted)
		if err != nil {
			bad = append(bad, key+": value not quoted")
			continue
		}
		h, err := protocol.ParseTokenHash(strings.TrimSpace(value))
		if err != nil {
			bad = append(bad, key+": "+err.Error())
			continue
		}
		hashes = append(hashes, h)
	}
	slices.SortFunc(hashes, func(a, b protocol.TokenHash) int { return bytes.Compare(a[:], b[:]) })
	return slices.Compact(hashes), bad
}
