package cli

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/doppel-dev/doppel/internal/buildinfo"
	"github.com/doppel-dev/doppel/protocol"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := NewCommand(Deps{Logger: slog.New(slog.DiscardHandler), Streams: Streams{In: strings.NewReader(""), Out: &out, Err: &errOut}})
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestVersionText(t *testing.T) {
	buildinfo.Version, buildinfo.Commit = "v1.2.3", "abc123"
	t.Cleanup(func() { buildinfo.Version, buildinfo.Commit = "dev", "" })
	out, err := run(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"v1.2.3", "abc123", "protocol 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("version output %q lacks %q", out, want)
		}
	}
}

func TestVersionJSON(t *testing.T) {
	out, err := run(t, "version", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var info buildinfo.Info
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if info.Protocol != protocol.Version || info.Version == "" || info.Commit == "" {
		t.Errorf("incomplete info: %+v", info)
	}
}

func TestVersionBadOutput(t *testing.T) {
	_, err := run(t, "version", "-o", "xml")
	if err == nil || !strings.Contains(err.Error(), "--output") {
		t.Fatalf("want an error naming --output, got %v", err)
	}
}
