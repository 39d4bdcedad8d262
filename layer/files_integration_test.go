//go:build integration && linux

package layer_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/doppel-dev/doppel/layer/seccomp"
)

// TestFileServe: a path the handler serves reads as the served content and
// stats with its size, though it does not exist locally; a path the handler
// calls not found gives ENOENT though it exists locally.
func TestFileServe(t *testing.T) {
	requireRoot(t)
	const served = "/etc/doppel-test/served.conf"
	if _, err := os.Stat(served); err == nil {
		t.Fatalf("%s exists locally", served)
	}
	local, err := os.CreateTemp("", "doppel-local-")
	if err != nil {
		t.Fatal(err)
	}
	local.WriteString("local content")
	local.Close()
	defer os.Remove(local.Name())
	content := "from the pod\n"
	for _, p := range programs {
		t.Run(p.name, func(t *testing.T) {
			h := newHandler()
			h.files[served] = content
			h.notFound[local.Name()] = true
			opts := runOpts{filter: seccomp.Options{Files: true}}
			r := run(t, h, opts, p.argv(t, "cat", served)...)
			wantContains(t, "served", r.stdout, `content="from the pod\n"`, fmt.Sprintf("size=%d", len(content)))
			r = run(t, h, opts, p.argv(t, "cat", local.Name())...)
			wantContains(t, "not found", r.stdout, "error=ENOENT")
		})
	}
}

// TestResolverReadsServedHosts: both Go resolvers (pure and cgo/glibc) read
// /etc/hosts through the layer, and the name leads to a redirected connect.
func TestResolverReadsServedHosts(t *testing.T) {
	requireRoot(t)
	for _, variant := range []string{"static", "cgo"} {
		t.Run(variant, func(t *testing.T) {
			srv := httpServer(t, "backend")
			h := newHandler()
			h.files["/etc/hosts"] = "127.0.0.1 localhost\n10.77.0.1 backend.test\n"
			h.files["/etc/nsswitch.conf"] = "hosts: files\n"
			h.redirect(remoteHTTP, srv)
			r := run(t, h, runOpts{filter: seccomp.Options{Files: true}}, buildProbe(t, variant), "http", "backend.test:80")
			wantContains(t, "output", r.stdout, "hello from backend", "peer="+remoteHTTP.String())
		})
	}
}
