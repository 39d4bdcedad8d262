//go:build integration && linux

package layer_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/layer"
	"github.com/doppel-dev/doppel/layer/seccomp"
)

var shimOnce sync.Once
var shimPath string

// buildShim builds layer/shim/libdoppel.so with its Makefile.
func buildShim(t *testing.T) string {
	t.Helper()
	shimOnce.Do(func() {
		dir, err := os.MkdirTemp("", "doppel-shim-")
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "libdoppel.so")
		if b, err := exec.Command("make", "-s", "-C", "shim", "OUT="+out).CombinedOutput(); err != nil {
			t.Fatalf("build shim: %v\n%s", err, b)
		}
		shimPath = out
	})
	if shimPath == "" {
		t.Fatal("shim not built")
	}
	return shimPath
}

// runPreloaded runs argv directly (no launcher) with the shim preloaded.
func runPreloaded(t *testing.T, h layer.Handler, o seccomp.Options, argv ...string) (string, layer.Stats) {
	t.Helper()
	requireRoot(t)
	requireTool(t, "gcc")
	shim := buildShim(t)
	sup := layer.NewSupervisor(h, layer.Options{Filter: o})
	defer sup.Close()
	srv, err := layer.ListenPreload(sup, filepath.Join(t.TempDir(), "layer.sock"))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), srv.Env(shim, "")...)
	out, err := cmd.CombinedOutput()
	t.Logf("%v: %v, %+v\n%s", argv, err, sup.Stats(), out)
	if err != nil {
		t.Errorf("%v: %v", argv, err)
	}
	return string(out), sup.Stats()
}

func TestPreloadConnect(t *testing.T) {
	requireRoot(t)
	dynamic := []program{programs[1], programs[2], programs[3], {"curl", func(t *testing.T, sub string, args ...string) []string {
		return []string{requireTool(t, "curl"), "-sS", "-w", "\npeer=%{remote_ip}:%{remote_port}\n", "http://" + args[0] + "/"}
	}}}
	for _, p := range dynamic {
		t.Run(p.name, func(t *testing.T) {
			srv := httpServer(t, "server")
			h := newHandler()
			h.redirect(remoteHTTP, srv)
			out, stats := runPreloaded(t, h, seccomp.Options{}, p.argv(t, "http", remoteHTTP.String())...)
			wantContains(t, "output", out, "hello from server", "peer="+remoteHTTP.String())
			if stats.Answered == 0 {
				t.Error("the supervisor answered nothing")
			}
			h.checkNoLeak(t)
		})
	}
}

func TestPreloadUDPAndFiles(t *testing.T) {
	requireRoot(t)
	echo := udpEcho(t)
	h := newHandler()
	h.redirect(remoteUDP, echo)
	h.files["/etc/doppel-test/served.conf"] = "from the pod\n"
	o := seccomp.Options{UDP: true, Files: true}
	out, _ := runPreloaded(t, h, o, requireTool(t, "python3"), testdata(t, "probe.py"), "udp", remoteUDP.String(), "preloaded")
	wantContains(t, "udp", out, "reply=echo:preloaded")
	out, _ = runPreloaded(t, h, o, requireTool(t, "node"), testdata(t, "probe.js"), "cat", "/etc/doppel-test/served.conf")
	wantContains(t, "file", out, `content="from the pod\n"`)
}
