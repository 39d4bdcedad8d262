//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.lsp.dev/jsonrpc2"

	"github.com/doppel-dev/doppel/helper/ide"
	"github.com/doppel-dev/doppel/test/e2e/framework"
)

// ideProc is a `doppel ide` process driven as an IDE extension drives it:
// JSON-RPC over its stdin and stdout.
type ideProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	conn   jsonrpc2.Conn
	stderr syncBuffer

	mu     sync.Mutex
	notes  []ideNote
	noteCh chan struct{}
}

type ideNote struct {
	method string
	params json.RawMessage
}

type stdioConn struct {
	io.ReadCloser
	w io.WriteCloser
}

func (s stdioConn) Write(b []byte) (int, error) { return s.w.Write(b) }
func (s stdioConn) Close() error {
	s.w.Close()
	return s.ReadCloser.Close()
}

// jsonCodec is encoding/json, as the server uses.
type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// startIDE starts `doppel ide` with env added.
func startIDE(t *testing.T, env ...string) *ideProc {
	t.Helper()
	bin, err := buildDoppel()
	if err != nil {
		t.Fatal(err)
	}
	p := &ideProc{t: t, cmd: exec.Command(bin, "ide", "--log-level", "debug"), noteCh: make(chan struct{}, 256)}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = &p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := p.cmd.Process.Pid
	p.conn = jsonrpc2.NewConn(jsonrpc2.NewStream(stdioConn{out, in}), jsonrpc2.WithCodec(jsonCodec{}))
	p.conn.Go(context.Background(), func(_ context.Context, req *jsonrpc2.Request) (any, error) {
		p.mu.Lock()
		p.notes = append(p.notes, ideNote{strings.Clone(req.Method()), append(json.RawMessage(nil), req.Params()...)})
		p.mu.Unlock()
		select {
		case p.noteCh <- struct{}{}:
		default:
		}
		return nil, nil
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("doppel ide stderr:\n%s", p.stderr.String())
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL) // only the group this test started
		p.cmd.Wait()
	})
	return p
}

func (p *ideProc) call(method string, params, result any, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, err := p.conn.Call(ctx, method, params, result)
	return err
}

func (p *ideProc) mustCall(method string, params, result any, d time.Duration) {
	p.t.Helper()
	if err := p.call(method, params, result, d); err != nil {
		var rpc *jsonrpc2.Error
		if errors.As(err, &rpc) {
			p.t.Fatalf("%s: %d %s %s", method, rpc.Code, rpc.Message, rpc.Data)
		}
		p.t.Fatalf("%s: %v", method, err)
	}
}

// waitNote waits for a notification whose params contain all of want.
func (p *ideProc) waitNote(method string, d time.Duration, want ...string) json.RawMessage {
	p.t.Helper()
	deadline := time.After(d)
	seen := 0
	for {
		p.mu.Lock()
		notes := p.notes[seen:]
		p.mu.Unlock()
	next:
		for _, n := range notes {
			seen++
			if n.method != method {
				continue
			}
			for _, w := range want {
				if !strings.Contains(string(n.params), w) {
					continue next
				}
			}
			return n.params
		}
		select {
		case <-p.noteCh:
		case <-deadline:
			p.t.Fatalf("no %s notification with %q within %s; notifications:\n%s", method, want, d, p.notesText())
			return nil
		}
	}
}

func (p *ideProc) notesText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	for _, n := range p.notes {
		fmt.Fprintf(&b, "%s %s\n", n.method, n.params)
	}
	return b.String()
}

// shutdown ends the conversation as an IDE closing its window does.
func (p *ideProc) shutdown() {
	p.t.Helper()
	p.mustCall(ide.MethodShutdown, nil, nil, time.Minute)
	p.conn.Notify(context.Background(), ide.MethodExit, nil)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			p.t.Errorf("doppel ide exited: %v", err)
		}
	case <-time.After(30 * time.Second):
		p.t.Error("doppel ide did not exit within 30s after exit")
	}
}

// buildShim builds libdoppel.so once.
var buildShim = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "doppel-e2e-shim")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "libdoppel.so")
	cmd := exec.Command("make", "-s", "-C", "layer/shim", "OUT="+out)
	cmd.Dir = framework.RepoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build libdoppel.so: %v\n%s", err, b)
	}
	return out, nil
})

// dapClient is the little of the Debug Adapter Protocol an IDE speaks to
// `dlv dap`: Content-Length framed JSON.
type dapClient struct {
	t    *testing.T
	conn net.Conn
	seq  int
	wmu  sync.Mutex
	mu   sync.Mutex
	msgs []map[string]any
	ch   chan struct{}
}

func dialDAP(t *testing.T, addr string) *dapClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("dial dlv dap at %s: %v", addr, err)
	}
	c := &dapClient{t: t, conn: conn, ch: make(chan struct{}, 256)}
	t.Cleanup(func() { conn.Close() })
	go c.read()
	return c
}

func (c *dapClient) read() {
	r := bufio.NewReader(c.conn)
	for {
		n := -1
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSpace(line)
			if line == "" {
				break
			}
			if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
				n, _ = strconv.Atoi(v)
			}
		}
		if n < 0 {
			return
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		var m map[string]any
		if json.Unmarshal(body, &m) != nil {
			continue
		}
		c.mu.Lock()
		c.msgs = append(c.msgs, m)
		c.mu.Unlock()
		select {
		case c.ch <- struct{}{}:
		default:
		}
	}
}

// send sends a request and returns its seq.
func (c *dapClient) send(command string, args any) int {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.seq++
	b, _ := json.Marshal(map[string]any{"seq": c.seq, "type": "request", "command": command, "arguments": args})
	if _, err := fmt.Fprintf(c.conn, "Content-Length: %d\r\n\r\n%s", len(b), b); err != nil {
		c.t.Fatalf("DAP %s: %v", command, err)
	}
	return c.seq
}

// wait returns the first message (from the start) that match accepts.
func (c *dapClient) wait(what string, d time.Duration, match func(map[string]any) bool) map[string]any {
	c.t.Helper()
	deadline := time.After(d)
	for {
		c.mu.Lock()
		for _, m := range c.msgs {
			if match(m) {
				c.mu.Unlock()
				return m
			}
		}
		c.mu.Unlock()
		select {
		case <-c.ch:
		case <-deadline:
			c.mu.Lock()
			defer c.mu.Unlock()
			c.t.Fatalf("DAP: no %s within %s; messages: %v", what, d, c.msgs)
			return nil
		}
	}
}

// request sends a request and waits for its successful response.
func (c *dapClient) request(command string, args any, d time.Duration) map[string]any {
	c.t.Helper()
	seq := c.send(command, args)
	resp := c.wait("response to "+command, d, func(m map[string]any) bool {
		return m["type"] == "response" && m["request_seq"] == float64(seq)
	})
	if resp["success"] != true {
		c.t.Fatalf("DAP %s failed: %v", command, resp)
	}
	return resp
}

func (c *dapClient) event(name string, d time.Duration, match func(map[string]any) bool) map[string]any {
	c.t.Helper()
	return c.wait("event "+name, d, func(m map[string]any) bool {
		return m["type"] == "event" && m["event"] == name && (match == nil || match(m))
	})
}

// forget drops the messages seen so far (events are matched from the
// start).
func (c *dapClient) forget() {
	c.mu.Lock()
	c.msgs = nil
	c.mu.Unlock()
}
