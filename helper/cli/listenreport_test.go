package cli

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/doppel-dev/doppel/helper/session"
)

func TestListenReport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "listen.jsonl")
	if err := os.WriteFile(path, []byte("stale\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := newListenReport(path)
	if err != nil {
		t.Fatal(err)
	}
	r.add(session.ListenPort{PID: 42, Proto: "tcp",
		Requested: netip.MustParseAddrPort("[::]:8080"), Actual: netip.MustParseAddrPort("[::]:40001")})
	r.add(session.ListenPort{PID: 43, Proto: "udp",
		Requested: netip.MustParseAddrPort("0.0.0.0:5353"), Actual: netip.MustParseAddrPort("0.0.0.0:5353")})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r.add(session.ListenPort{PID: 44, Proto: "tcp"}) // after Close: dropped, no panic
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"pid":42,"proto":"tcp","requested":"[::]:8080","actual":"[::]:40001"}
{"pid":43,"proto":"udp","requested":"0.0.0.0:5353","actual":"0.0.0.0:5353"}
`
	if string(got) != want {
		t.Errorf("report:\n%s\nwant:\n%s", got, want)
	}
}

func TestListenReportBadPath(t *testing.T) {
	if _, err := newListenReport(filepath.Join(t.TempDir(), "no", "such", "dir", "f")); err == nil {
		t.Error("no error for a file in a missing directory")
	}
}
