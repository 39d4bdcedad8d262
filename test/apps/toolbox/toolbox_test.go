package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for the toolbox binary in tests
// that need a separate process (signals).
func TestMain(m *testing.M) {
	if os.Getenv("TOOLBOX_HELPER") == "1" {
		sleepReady = func() { fmt.Println("ready") }
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestRunUsage(t *testing.T) {
	var stderr bytes.Buffer
	if code := run(nil, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "usage") {
		t.Errorf("no args: %d %q", code, stderr.String())
	}
	stderr.Reset()
	if code := run([]string{"frob"}, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), `unknown command "frob"`) {
		t.Errorf("unknown: %d %q", code, stderr.String())
	}
}

func TestHelloHandler(t *testing.T) {
	env := map[string]string{"POD_NAME": "pod-1", "EMPTY": ""}
	h := helloHandler("host-a", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/", 200, "hello from host-a\n"},
		{"/env/POD_NAME", 200, "pod-1\n"},
		{"/env/EMPTY", 200, "\n"},
		{"/env/MISSING", 404, "MISSING is not set\n"},
		{"/healthz", 200, "ok\n"},
		{"/other", 404, "404 page not found\n"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if rec.Code != tc.code || rec.Body.String() != tc.body {
			t.Errorf("GET %s = %d %q, want %d %q", tc.path, rec.Code, rec.Body, tc.code, tc.body)
		}
	}
}

func TestGet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			io.WriteString(w, "body")
		case "/slow":
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
		default:
			http.Error(w, "nope", http.StatusTeapot)
		}
	}))
	defer srv.Close()

	var out, errOut bytes.Buffer
	if code := run([]string{"get", srv.URL + "/ok"}, &out, &errOut); code != 0 || out.String() != "body" {
		t.Errorf("get /ok = %d %q %q", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"get", srv.URL + "/bad"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "418") || out.Len() != 0 {
		t.Errorf("get /bad = %d %q %q", code, out.String(), errOut.String())
	}
	start := time.Now()
	if code := run([]string{"get", "-timeout", "200ms", srv.URL + "/slow"}, &out, io.Discard); code != 1 {
		t.Errorf("get /slow with timeout = %d", code)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("-timeout not honoured: took %v", d)
	}
	if code := run([]string{"get"}, &out, io.Discard); code != 2 {
		t.Errorf("get without URL = %d", code)
	}
}

type fakeLookup struct {
	addrs []net.IPAddr
	err   error
}

func (f fakeLookup) LookupIPAddr(context.Context, string) ([]net.IPAddr, error) {
	return f.addrs, f.err
}

func TestResolve(t *testing.T) {
	ctx := context.Background()
	ips, err := resolve(ctx, fakeLookup{addrs: []net.IPAddr{{IP: net.ParseIP("10.0.0.1")}, {IP: net.ParseIP("fd00::1")}}}, "svc")
	if err != nil || strings.Join(ips, ",") != "10.0.0.1,fd00::1" {
		t.Errorf("resolve = %v, %v", ips, err)
	}
	if _, err := resolve(ctx, fakeLookup{}, "svc"); err == nil {
		t.Error("no addresses must be an error")
	}
	if _, err := resolve(ctx, fakeLookup{err: errors.New("nxdomain")}, "svc"); err == nil {
		t.Error("lookup error swallowed")
	}
	// The real resolver, on a name /etc/hosts answers (no DNS traffic).
	var out bytes.Buffer
	if code := run([]string{"resolve", "localhost"}, &out, io.Discard); code != 0 || !strings.Contains(out.String(), "127.0.0.1") && !strings.Contains(out.String(), "::1") {
		t.Errorf("resolve localhost = %d %q", code, out.String())
	}
}

func TestEchoUDP(t *testing.T) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- echoUDP(ctx, conn) }()

	c, err := net.Dial("udp", conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	for _, msg := range []string{"ping", "second datagram"} {
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 100)
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != msg {
			t.Errorf("echo of %q = %q, %v", msg, buf[:n], err)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("echoUDP after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("echoUDP did not stop on cancel")
	}
}

func TestSleepExitsOnSIGTERM(t *testing.T) {
	cmd := exec.Command(os.Args[0], "sleep")
	cmd.Env = append(os.Environ(), "TOOLBOX_HELPER=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, len("ready\n"))
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "ready\n" {
		cmd.Process.Kill()
		t.Fatalf("helper did not get ready: %q %v", line, err)
	}
	// Nothing happens without a signal.
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("sleep exited on its own: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("sleep after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		t.Fatal("sleep ignored SIGTERM")
	}
}

func TestListProcs(t *testing.T) {
	root := t.TempDir()
	write := func(pid, file, content string) {
		os.MkdirAll(filepath.Join(root, pid), 0o755)
		os.WriteFile(filepath.Join(root, pid, file), []byte(content), 0o644)
	}
	write("10", "cmdline", "/toolbox\x00serve\x00-port\x008080\x00")
	write("2", "cmdline", "")
	write("2", "comm", "kthreadd\n")
	write("1", "cmdline", "/pause\x00")
	write("self", "cmdline", "ignored")
	os.WriteFile(filepath.Join(root, "uptime"), nil, 0o644)

	procs, err := listProcs(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []proc{{1, "/pause"}, {2, "[kthreadd]"}, {10, "/toolbox serve -port 8080"}}
	if fmt.Sprint(procs) != fmt.Sprint(want) {
		t.Errorf("procs = %v, want %v", procs, want)
	}

	// Against the real /proc, this test process must be listed.
	var out bytes.Buffer
	if code := run([]string{"ps"}, &out, io.Discard); code != 0 || !strings.Contains(out.String(), fmt.Sprintf("\n%d ", os.Getpid())) {
		t.Errorf("ps does not list pid %d:\n%s", os.Getpid(), out.String())
	}
}

func TestCat(t *testing.T) {
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, []byte("A=1\x00B=2\x00"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"cat", f}, &out, &errOut); code != 0 || out.String() != "A=1\x00B=2\x00" {
		t.Fatalf("cat: code %d out %q err %q", code, out.String(), errOut.String())
	}
	if code := run([]string{"cat", f + ".missing"}, &out, &errOut); code != 1 {
		t.Fatalf("cat of a missing file: code %d", code)
	}
}

func TestBytesEndpoint(t *testing.T) {
	srv := httptest.NewServer(helloHandler("h", func(string) (string, bool) { return "", false }))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/bytes/3")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n != 3<<20 {
		t.Fatalf("got %d bytes", n)
	}
	if resp, _ := http.Get(srv.URL + "/bytes/x"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad size: %d", resp.StatusCode)
	}
}

// load sends exactly -n requests with their headers, on at most -c
// connections, and reports who answered; a failing server is an error.
func TestLoad(t *testing.T) {
	var conns, reqs, withHeader atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs.Add(1)
		if r.Header.Get("X-Bench") == "yes" {
			withHeader.Add(1)
		}
		fmt.Fprintln(w, "server a")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	var out, errOut bytes.Buffer
	if code := run([]string{"load", "-n", "50", "-c", "1", "-H", "X-Bench: yes", srv.URL}, &out, &errOut); code != 0 {
		t.Fatalf("load: %d %s %s", code, out.String(), errOut.String())
	}
	var res loadResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if res.Sent != 50 || res.OK != 50 || res.Bodies["server a"] != 50 || reqs.Load() != 50 || conns.Load() != 1 || withHeader.Load() != 50 || res.P50ms <= 0 {
		t.Errorf("result %+v; server saw %d requests (%d with the header) on %d connections", res, reqs.Load(), withHeader.Load(), conns.Load())
	}

	// Paced and bounded in time.
	out.Reset()
	start := time.Now()
	run([]string{"load", "-duration", "500ms", "-rate", "100", "-c", "4", srv.URL}, &out, &errOut)
	json.Unmarshal(out.Bytes(), &res)
	if d := time.Since(start); d > 2*time.Second || res.OK < 20 || res.OK > 60 {
		t.Errorf("paced load took %s and answered %d, want ~50 in ~0.5s", d, res.OK)
	}

	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", 500) }))
	defer failing.Close()
	out.Reset()
	if code := run([]string{"load", "-n", "3", failing.URL}, &out, &errOut); code != 1 || !strings.Contains(out.String(), `"errors":3`) {
		t.Errorf("failing server: code %d, %s", code, out.String())
	}
}
