package ide

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.lsp.dev/jsonrpc2"

	"github.com/doppel-dev/doppel/helper/kube"
	"github.com/doppel-dev/doppel/helper/session"
)

// pipeRWC is one end of two os.Pipe pairs.
type pipeRWC struct {
	r *os.File
	w *os.File
}

func (p pipeRWC) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p pipeRWC) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p pipeRWC) Close() error {
	p.r.Close()
	return p.w.Close()
}

// fakeIDE is a client of a Server over real pipes: what an extension is.
type fakeIDE struct {
	t    *testing.T
	conn jsonrpc2.Conn
	done chan error

	mu     sync.Mutex
	notes  []note
	noteCh chan struct{}
}

type note struct {
	method string
	params json.RawMessage
}

func startServer(t *testing.T, opts Options) *fakeIDE {
	t.Helper()
	sr, cw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cr, sw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &fakeIDE{t: t, done: make(chan error, 1), noteCh: make(chan struct{}, 100)}
	go func() { c.done <- Serve(context.Background(), pipeRWC{sr, sw}, opts) }()
	c.conn = jsonrpc2.NewConn(jsonrpc2.NewStream(pipeRWC{cr, cw}), jsonrpc2.WithCodec(stdCodec{}))
	c.conn.Go(context.Background(), func(ctx context.Context, req *jsonrpc2.Request) (any, error) {
		c.mu.Lock()
		c.notes = append(c.notes, note{strings.Clone(req.Method()), append(json.RawMessage(nil), req.Params()...)})
		c.mu.Unlock()
		select {
		case c.noteCh <- struct{}{}:
		default:
		}
		return nil, nil
	})
	t.Cleanup(func() {
		c.conn.Close()
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			t.Error("the server did not stop within 10s after the client closed")
		}
	})
	return c
}

// call sends a request and returns the error as a *jsonrpc2.Error (nil on
// success).
func (c *fakeIDE) call(method string, params, result any) *jsonrpc2.Error {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := c.conn.Call(ctx, method, params, result)
	if err == nil {
		return nil
	}
	var rpc *jsonrpc2.Error
	if !errors.As(err, &rpc) {
		c.t.Fatalf("%s: not a JSON-RPC error: %v", method, err)
	}
	return rpc
}

func (c *fakeIDE) mustCall(method string, params, result any) {
	c.t.Helper()
	if err := c.call(method, params, result); err != nil {
		c.t.Fatalf("%s: %d %s (%s)", method, err.Code, err.Message, err.Data)
	}
}

func (c *fakeIDE) initialize(folders ...string) InitializeResult {
	c.t.Helper()
	var res InitializeResult
	c.mustCall(MethodInitialize, InitializeParams{ClientName: "test", WorkspaceFolders: folders}, &res)
	return res
}

// waitNote waits for a notification that match accepts.
func (c *fakeIDE) waitNote(method string, match func(json.RawMessage) bool) json.RawMessage {
	c.t.Helper()
	deadline := time.After(10 * time.Second)
	seen := 0
	for {
		c.mu.Lock()
		notes := c.notes[seen:]
		c.mu.Unlock()
		for _, n := range notes {
			seen++
			if n.method == method && (match == nil || match(n.params)) {
				return n.params
			}
		}
		select {
		case <-c.noteCh:
		case <-deadline:
			c.mu.Lock()
			defer c.mu.Unlock()
			c.t.Fatalf("no matching %s notification within 10s; got %v", method, c.notes)
			return nil
		}
	}
}

func wantCode(t *testing.T, what string, err *jsonrpc2.Error, code int) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want code %d", what, code)
	}
	if int(err.Code) != code {
		t.Fatalf("%s: code %d (%s), want %d", what, err.Code, err.Message, code)
	}
}

func TestLifecycleAndErrors(t *testing.T) {
	c := startServer(t, Options{Version: "v9.9.9"})
	wantCode(t, "listSessions before initialize", c.call(MethodListSessions, nil, nil), CodeServerNotInitialized)
	res := c.initialize()
	if res.ServerName != "doppel" || res.ServerVersion != "v9.9.9" || res.ProtocolVersion != 1 || len(res.DebugTypes) != 6 {
		t.Errorf("initialize: %+v", res)
	}
	wantCode(t, "second initialize", c.call(MethodInitialize, InitializeParams{}, nil), int(jsonrpc2.InvalidRequest))
	wantCode(t, "unknown method", c.call("doppel/nope", nil, nil), int(jsonrpc2.MethodNotFound))
	wantCode(t, "checkConfig with a number for path", c.call(MethodCheckConfig, map[string]any{"path": 5}, nil), int(jsonrpc2.InvalidParams))
	wantCode(t, "checkConfig without params", c.call(MethodCheckConfig, nil, nil), int(jsonrpc2.InvalidParams))
	wantCode(t, "resolveLaunch without launch", c.call(MethodResolveLaunch, map[string]any{"target": "pod/x"}, nil), int(jsonrpc2.InvalidParams))

	e := c.call(MethodEndSession, SessionParams{SessionID: "nope"}, nil)
	wantCode(t, "endSession of an unknown session", e, CodeUnknownSession)
	var sd SessionErrorData
	if json.Unmarshal(e.Data, &sd); sd.SessionID != "nope" {
		t.Errorf("unknown session data: %s", e.Data)
	}
	wantCode(t, "debuggeeState of an unknown session", c.call(MethodDebuggeeState, DebuggeeStateParams{SessionID: "nope", Paused: true}, nil), CodeUnknownSession)
	wantCode(t, "resolveLaunch reusing an unknown session",
		c.call(MethodResolveLaunch, ResolveLaunchParams{Launch: map[string]any{"type": "node"}, SessionID: "nope"}, nil), CodeUnknownSession)

	e = c.call(MethodResolveLaunch, ResolveLaunchParams{Launch: map[string]any{"type": "cppdbg", "request": "launch"}}, nil)
	wantCode(t, "resolveLaunch of cppdbg", e, CodeUnsupportedLaunch)
	if !strings.Contains(string(e.Data), `"type":"cppdbg"`) {
		t.Errorf("unsupported launch data: %s", e.Data)
	}
	wantCode(t, "resolveLaunch of an attach", c.call(MethodResolveLaunch,
		ResolveLaunchParams{Launch: map[string]any{"type": "go", "request": "attach"}}, nil), CodeUnsupportedLaunch)

	var sessions ListSessionsResult
	c.mustCall(MethodListSessions, nil, &sessions)
	if sessions.Sessions == nil || len(sessions.Sessions) != 0 {
		t.Errorf("listSessions: %+v", sessions)
	}
	var schema GetSchemaResult
	c.mustCall(MethodGetSchema, nil, &schema)
	var parsed map[string]any
	if err := json.Unmarshal(schema.Schema, &parsed); err != nil || parsed["$defs"] == nil {
		t.Errorf("getSchema: %v %.200s", err, schema.Schema)
	}

	// shutdown, then nothing but exit.
	if err := c.call(MethodShutdown, nil, nil); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	wantCode(t, "request after shutdown", c.call(MethodListSessions, nil, nil), int(jsonrpc2.InvalidRequest))
	if err := c.conn.Notify(context.Background(), MethodExit, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.done:
		c.done <- err
		if err != nil {
			t.Errorf("Serve after shutdown and exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not exit")
	}
}

func TestCheckConfig(t *testing.T) {
	c := startServer(t, Options{})
	c.initialize()
	path := filepath.Join(t.TempDir(), ".doppel", "config.yaml")
	bad := "target: deployment/backend\nfeature:\n  network:\n    incomin: steal\n"
	var res CheckConfigResult
	c.mustCall(MethodCheckConfig, CheckConfigParams{Path: path, Text: &bad}, &res)
	if len(res.Diagnostics) != 1 {
		t.Fatalf("diagnostics: %+v", res.Diagnostics)
	}
	d := res.Diagnostics[0]
	if d.Severity != "error" || d.KeyPath != "feature.network.incomin" || d.Line != 4 || d.Column != 5 || d.Code != "unknown_key" ||
		!strings.Contains(d.Message, "incoming") || strings.Contains(d.Message, path) {
		t.Errorf("diagnostic: %+v", d)
	}
	good := "target: deployment/backend\nfeature:\n  network:\n    incoming: {mode: steal, on_pause: local}\n"
	c.mustCall(MethodCheckConfig, CheckConfigParams{Path: path, Text: &good}, &res)
	if res.Diagnostics == nil || len(res.Diagnostics) != 0 {
		t.Errorf("a valid config: %+v", res.Diagnostics)
	}
	wrongEnum := "feature:\n  network:\n    incoming: {mode: steal, on_pause: somewhere}\n"
	c.mustCall(MethodCheckConfig, CheckConfigParams{Path: path, Text: &wrongEnum}, &res)
	if len(res.Diagnostics) != 1 || res.Diagnostics[0].KeyPath != "feature.network.incoming.on_pause" || res.Diagnostics[0].Line != 3 {
		t.Errorf("on_pause: somewhere: %+v", res.Diagnostics)
	}
	// From the file on disk: a missing file is an io error.
	c.mustCall(MethodCheckConfig, CheckConfigParams{Path: path}, &res)
	if len(res.Diagnostics) != 1 || res.Diagnostics[0].Code != "io" {
		t.Errorf("missing file: %+v", res.Diagnostics)
	}
}

func TestResolveLaunchBadConfig(t *testing.T) {
	started := false
	c := startServer(t, Options{Start: func(context.Context, session.StartOptions) (*session.Run, error) {
		started = true
		return nil, errors.New("must not start")
	}})
	ws := t.TempDir()
	os.MkdirAll(filepath.Join(ws, ".doppel"), 0o755)
	os.WriteFile(filepath.Join(ws, ".doppel", "config.json"), []byte(`{"target": "deployment/backend", "agent": {"ttl": "soon"}}`), 0o644)
	c.initialize()
	e := c.call(MethodResolveLaunch, ResolveLaunchParams{Launch: map[string]any{"type": "node", "request": "launch"}, WorkspaceFolder: ws}, nil)
	wantCode(t, "resolveLaunch with a bad config", e, CodeConfigInvalid)
	var data ConfigErrorData
	if err := json.Unmarshal(e.Data, &data); err != nil || data.Category != "config" || len(data.Diagnostics) != 1 ||
		data.Diagnostics[0].KeyPath != "agent.ttl" || data.Diagnostics[0].Line != 1 || !strings.HasSuffix(data.Path, "config.json") {
		t.Errorf("data: %s (%v)", e.Data, err)
	}
	if started {
		t.Error("a session started with an invalid config")
	}
}

func TestResolveLaunchClusterError(t *testing.T) {
	var got session.StartOptions
	c := startServer(t, Options{Start: func(ctx context.Context, opts session.StartOptions) (*session.Run, error) {
		got = opts
		opts.Progress("resolving deployment/nope")
		return nil, &kube.Error{Reason: kube.ReasonNotFound, Message: `deployment "nope" not found in namespace staging`}
	}})
	c.initialize()
	e := c.call(MethodResolveLaunch, ResolveLaunchParams{Launch: map[string]any{"type": "node", "request": "launch"},
		Target: "deployment/nope", Namespace: "staging"}, nil)
	wantCode(t, "resolveLaunch of a missing target", e, CodeCluster)
	var data ClusterErrorData
	if err := json.Unmarshal(e.Data, &data); err != nil || data.Reason != "not_found" || data.Category != "user" {
		t.Errorf("data: %s (%v)", e.Data, err)
	}
	if got.Config.Target.Path.String() != "deployment/nope" || got.Kube.Namespace != "staging" || got.ID == "" {
		t.Errorf("start options: target %s, namespace %q, id %q", got.Config.Target.Path, got.Kube.Namespace, got.ID)
	}
	// Progress and state carried the session id.
	var p ProgressParams
	json.Unmarshal(c.waitNote(NotifyProgress, nil), &p)
	if p.SessionID != got.ID || p.Step != "resolving deployment/nope" {
		t.Errorf("progress: %+v", p)
	}
	var st SessionStateParams
	json.Unmarshal(c.waitNote(NotifySessionState, func(m json.RawMessage) bool { return strings.Contains(string(m), `"ended"`) }), &st)
	if st.SessionID != got.ID || st.Category != "cluster" || !strings.Contains(st.Reason, "not found") {
		t.Errorf("ended: %+v", st)
	}
	// Any other start failure is a cluster error without a reason.
	c2 := startServer(t, Options{Start: func(context.Context, session.StartOptions) (*session.Run, error) {
		return nil, errors.New("connect to the agent doppel/agent-x: connection refused")
	}})
	c2.initialize()
	e = c2.call(MethodResolveLaunch, ResolveLaunchParams{Launch: map[string]any{"type": "go"}, Target: "pod/x"}, nil)
	wantCode(t, "agent unreachable", e, CodeCluster)
	if !strings.Contains(string(e.Data), `"category":"cluster"`) {
		t.Errorf("data: %s", e.Data)
	}
}

func TestListTargets(t *testing.T) {
	var asked kube.Options
	c := startServer(t, Options{List: func(_ context.Context, ko kube.Options, lo kube.ListOptions) (*kube.Listing, error) {
		asked = ko
		if ko.Namespace == "forbidden" {
			return nil, &kube.Error{Reason: kube.ReasonForbidden, Message: "cannot list deployments.apps in namespace forbidden"}
		}
		return &kube.Listing{Namespace: ko.Namespace, Namespaces: []string{"default", "staging"}, Targets: []kube.TargetInfo{
			{Path: "deployment/backend", Kind: "deployment", Name: "backend", Namespace: "staging", Containers: []string{"backend"}, Ready: true, ReadyPods: 1, Pods: 1},
		}}, nil
	}})
	c.initialize()
	var raw json.RawMessage
	c.mustCall(MethodListTargets, ListTargetsParams{Namespace: "staging", Context: "kind"}, &raw)
	if asked.Namespace != "staging" || asked.Context != "kind" {
		t.Errorf("asked %+v", asked)
	}
	if !strings.Contains(string(raw), `"readyPods":1`) || !strings.Contains(string(raw), `"path":"deployment/backend"`) {
		t.Errorf("listTargets: %s", raw)
	}
	// With a config file, doppel ide's own flags still win over its keys,
	// as they do for the session (the picker must list that cluster).
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfgFile, []byte("kube_context: from-file\ntarget: {path: deployment/backend, namespace: file-ns}\n"), 0o644)
	flagged := startServer(t, Options{Kube: kube.Options{Context: "from-flag"}, List: func(_ context.Context, ko kube.Options, _ kube.ListOptions) (*kube.Listing, error) {
		asked = ko
		return &kube.Listing{Namespace: ko.Namespace}, nil
	}})
	flagged.initialize()
	flagged.mustCall(MethodListTargets, ListTargetsParams{ConfigFile: cfgFile}, &raw)
	if asked.Context != "from-flag" || asked.Namespace != "file-ns" {
		t.Errorf("with a config file and --context: asked %+v, want context from-flag, namespace file-ns", asked)
	}
	e := c.call(MethodListTargets, ListTargetsParams{Namespace: "forbidden"}, nil)
	wantCode(t, "listTargets forbidden", e, CodeCluster)
	if !strings.Contains(string(e.Data), `"reason":"forbidden"`) || !strings.Contains(string(e.Data), `"category":"cluster"`) {
		t.Errorf("data: %s", e.Data)
	}
}

func TestConfigDiagnosticsPushed(t *testing.T) {
	ws := t.TempDir()
	c := startServer(t, Options{})
	c.initialize(ws)
	// .doppel/ does not exist yet: it is picked up when created.
	dir := filepath.Join(ws, ".doppel")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte("target: deployment/backend\nagnet: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var p ConfigDiagnosticsParams
	json.Unmarshal(c.waitNote(NotifyConfigDiagnose, func(m json.RawMessage) bool { return strings.Contains(string(m), "agnet") }), &p)
	if p.Path != file || len(p.Diagnostics) != 1 || p.Diagnostics[0].Line != 2 || p.Diagnostics[0].KeyPath != "agnet" {
		t.Errorf("diagnostics: %+v", p)
	}
	if err := os.WriteFile(file, []byte("target: deployment/backend\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	raw := c.waitNote(NotifyConfigDiagnose, func(m json.RawMessage) bool { return strings.Contains(string(m), `"diagnostics":[]`) })
	if !strings.Contains(string(raw), file) {
		t.Errorf("fixed: %s", raw)
	}
	// Other files are not config files.
	if isConfigFile(filepath.Join(ws, ".mirrord", "x.yaml")) || !isConfigFile(filepath.Join(ws, ".mirrord", "x.json")) {
		t.Error("isConfigFile")
	}
}

// The stream closing is shutdown and exit at once.
func TestStdinClosed(t *testing.T) {
	sr, cw, _ := os.Pipe()
	cr, sw, _ := os.Pipe()
	defer cr.Close()
	done := make(chan error, 1)
	go func() { done <- Serve(context.Background(), pipeRWC{sr, sw}, Options{}) }()
	go io.Copy(io.Discard, cr)
	cw.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after stdin closed")
	}
}
