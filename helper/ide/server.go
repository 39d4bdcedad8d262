// Package ide is `doppel ide`: the JSON-RPC 2.0 server (LSP framing on
// stdio, go.lsp.dev/jsonrpc2) the IDE extensions talk to. It is a second
// front end over the session engine of `doppel exec` (helper/session): it
// starts sessions for debug launches, injects what each debug type needs
// into the launch configuration, checks config files and pushes their
// diagnostics. docs/ide-protocol.md is the contract.
package ide

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"go.lsp.dev/jsonrpc2"

	"github.com/doppel-dev/doppel/helper/config"
	"github.com/doppel-dev/doppel/helper/kube"
	"github.com/doppel-dev/doppel/helper/session"
	"github.com/doppel-dev/doppel/schema"
)

// Options configure a Server.
type Options struct {
	Log     *slog.Logger
	Version string
	// Kube is what the command line says about the cluster (kubectl's
	// flags); it overrides the config's keys.
	Kube kube.Options
	// AgentAddress and AgentToken: every session connects to this agent
	// instead of starting one (development, tests).
	AgentAddress, AgentToken string
	// Shim is libdoppel.so; "" finds it next to the doppel binary (or
	// $DOPPEL_SHIM).
	Shim string
	// Dlv is Delve; "" looks for it (launch.dlvToolPath, $DOPPEL_DLV,
	// PATH, ~/go/bin, ~/.cache/doppel/tools).
	Dlv string
	// Start starts a session; nil is session.Start (tests inject failures).
	Start func(ctx context.Context, opts session.StartOptions) (*session.Run, error)
	// List lists targets; nil asks the cluster.
	List func(ctx context.Context, ko kube.Options, lo kube.ListOptions) (*kube.Listing, error)
}

// Server serves one IDE window.
type Server struct {
	opts Options
	log  *slog.Logger
	conn jsonrpc2.Conn
	exit chan struct{}
	// life ends at shutdown: session starts in progress stop.
	life    context.Context
	cancel  context.CancelFunc
	watcher *watcher

	mu          sync.Mutex
	initialized bool
	shutdown    bool
	exited      bool
	sessions    map[string]*ideSession
}

// Serve runs the protocol on rwc until the client sends exit or closes
// the stream; every session ends before it returns. It returns an error
// when the client exited without shutdown (LSP's exit code 1).
func Serve(ctx context.Context, rwc io.ReadWriteCloser, opts Options) error {
	s := NewServer(opts)
	return s.Serve(ctx, rwc)
}

// NewServer returns a server; Serve runs it.
func NewServer(opts Options) *Server {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Start == nil {
		opts.Start = session.Start
	}
	if opts.List == nil {
		opts.List = listCluster
	}
	life, cancel := context.WithCancel(context.Background())
	return &Server{opts: opts, log: opts.Log, exit: make(chan struct{}), life: life, cancel: cancel,
		sessions: map[string]*ideSession{}}
}

// Serve runs the protocol on rwc; see the package function.
func (s *Server) Serve(ctx context.Context, rwc io.ReadWriteCloser) error {
	in := &readWatch{ReadWriteCloser: rwc, ended: make(chan struct{})}
	s.conn = jsonrpc2.NewConn(jsonrpc2.NewStream(in), jsonrpc2.WithCodec(stdCodec{}))
	s.conn.Go(ctx, s.handle)
	linger := 5 * time.Second
	select {
	case <-in.ended:
		// Not conn.Done, which waits for the requests in flight: a
		// session start among them is cancelled now, not finished first.
		s.log.Info("the client closed the stream")
	case <-s.exit:
		// A client may keep our stdin open after exit: a read blocked on
		// it can't be interrupted, so don't wait for the stream to end.
		linger = 100 * time.Millisecond
	case <-ctx.Done():
	}
	s.endAll("the IDE backend stopped")
	if s.watcher != nil {
		s.watcher.Close()
	}
	rwc.Close()
	select {
	case <-s.conn.Done():
	case <-time.After(linger):
	}
	s.mu.Lock()
	clean := s.shutdown || !s.exited
	s.mu.Unlock()
	if !clean {
		return errors.New("exit without shutdown")
	}
	return nil
}

// readWatch closes ended when a read fails: the client closed the stream.
type readWatch struct {
	io.ReadWriteCloser
	once  sync.Once
	ended chan struct{}
}

func (r *readWatch) Read(b []byte) (int, error) {
	n, err := r.ReadWriteCloser.Read(b)
	if err != nil {
		r.once.Do(func() { close(r.ended) })
	}
	return n, err
}

// stdCodec encodes payloads with encoding/json, so that the types'
// `omitempty` means what docs/ide-protocol.md says.
type stdCodec struct{}

func (stdCodec) Marshal(v any) ([]byte, error) {
	if v == nil {
		return []byte("null"), nil
	}
	return json.Marshal(v)
}

func (stdCodec) Unmarshal(data []byte, v any) error {
	if raw, ok := v.(*json.RawMessage); ok {
		*raw = append((*raw)[:0], data...)
		return nil
	}
	return json.Unmarshal(data, v)
}

// notify sends a notification; a client gone is not an error here.
func (s *Server) notify(method string, params any) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.conn.Notify(ctx, method, params); err != nil {
		s.log.Debug("notification not sent", "method", method, "err", err)
	}
}

// handle dispatches one request or notification.
func (s *Server) handle(ctx context.Context, req *jsonrpc2.Request) (any, error) {
	method := strings.Clone(req.Method()) // borrowed from the frame until the handler returns
	if !req.IsCall() {
		switch method {
		case MethodExit:
			s.mu.Lock()
			if !s.exited {
				s.exited = true
				close(s.exit)
			}
			s.mu.Unlock()
		default:
			s.log.Debug("notification ignored", "method", method)
		}
		return nil, nil
	}
	s.mu.Lock()
	initialized, shutdown := s.initialized, s.shutdown
	s.mu.Unlock()
	if method == MethodInitialize {
		var p InitializeParams
		if err := decode(req, &p, false); err != nil {
			return nil, err
		}
		return s.initialize(p)
	}
	if !initialized {
		return nil, jsonrpc2.NewError(CodeServerNotInitialized, "the server is not initialized: send initialize first")
	}
	if shutdown {
		return nil, jsonrpc2.NewError(jsonrpc2.InvalidRequest, "the server is shut down: only exit is accepted")
	}
	start := time.Now()
	res, err := s.call(ctx, method, req)
	if err != nil {
		s.log.Info("request failed", "method", method, "err", err, "elapsed", time.Since(start))
		return nil, rpcError(err)
	}
	s.log.Debug("request", "method", method, "elapsed", time.Since(start))
	return res, nil
}

func (s *Server) call(ctx context.Context, method string, req *jsonrpc2.Request) (any, error) {
	switch method {
	case MethodShutdown:
		s.mu.Lock()
		s.shutdown = true
		s.mu.Unlock()
		s.endAll("the IDE shut the backend down")
		return nil, nil
	case MethodGetSchema:
		return GetSchemaResult{Schema: json.RawMessage(bytes.TrimSpace(schema.JSON))}, nil
	case MethodCheckConfig:
		var p CheckConfigParams
		if err := decode(req, &p, true); err != nil {
			return nil, err
		}
		if p.Path == "" {
			return nil, invalidParams("checkConfig needs path")
		}
		return CheckConfigResult{Diagnostics: checkConfig(p.Path, p.Text)}, nil
	case MethodListTargets:
		var p ListTargetsParams
		if err := decode(req, &p, false); err != nil {
			return nil, err
		}
		jsonrpc2.Async(ctx)
		return s.listTargets(ctx, p)
	case MethodResolveLaunch:
		var p ResolveLaunchParams
		if err := decode(req, &p, true); err != nil {
			return nil, err
		}
		jsonrpc2.Async(ctx)
		return s.resolveLaunch(ctx, p)
	case MethodEndSession:
		var p SessionParams
		if err := decode(req, &p, true); err != nil {
			return nil, err
		}
		sess, err := s.take(p.SessionID)
		if err != nil {
			return nil, err
		}
		sess.end("ended by the IDE", "")
		return nil, nil
	case MethodDebuggeeState:
		var p DebuggeeStateParams
		if err := decode(req, &p, true); err != nil {
			return nil, err
		}
		sess, err := s.get(p.SessionID)
		if err != nil {
			return nil, err
		}
		// Recorded before Async: the handler sees requests in order.
		sess.wantPaused(p.Paused)
		jsonrpc2.Async(ctx)
		sess.syncPaused(ctx)
		return nil, nil
	case MethodListSessions:
		return s.listSessions(), nil
	}
	return nil, jsonrpc2.Errorf(jsonrpc2.MethodNotFound, "unknown method %q", method)
}

func (s *Server) initialize(p InitializeParams) (any, error) {
	s.mu.Lock()
	if s.initialized {
		s.mu.Unlock()
		return nil, jsonrpc2.NewError(jsonrpc2.InvalidRequest, "initialize was already sent")
	}
	s.initialized = true
	s.mu.Unlock()
	s.log.Info("initialize", "client", p.ClientName, "version", p.ClientVersion, "folders", p.WorkspaceFolders)
	if len(p.WorkspaceFolders) > 0 {
		w, err := newWatcher(p.WorkspaceFolders, s.log.With("part", "watch"), func(path string, diags []Diagnostic) {
			s.notify(NotifyConfigDiagnose, ConfigDiagnosticsParams{Path: path, Diagnostics: diags})
		})
		if err != nil {
			s.log.Warn("config files are not watched", "err", err)
		} else {
			s.watcher = w
		}
	}
	return InitializeResult{ServerName: "doppel", ServerVersion: s.opts.Version, ProtocolVersion: ProtocolVersion,
		DebugTypes: slicesClone(debugTypes)}, nil
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// decode reads a request's params into v: -32602 when they do not fit,
// or are missing and required.
func decode(req *jsonrpc2.Request, v any, required bool) error {
	raw := bytes.TrimSpace(req.Params())
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		if required {
			return invalidParams("%s needs params", req.Method())
		}
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return invalidParams("%s: invalid params: %v", req.Method(), err)
	}
	return nil
}

func invalidParams(format string, args ...any) *jsonrpc2.Error {
	return jsonrpc2.Errorf(jsonrpc2.InvalidParams, format, args...)
}

// errorWithData is a *jsonrpc2.Error carrying data.
func errorWithData(code int, message string, data any) *jsonrpc2.Error {
	e := jsonrpc2.NewError(jsonrpc2.Code(code), message)
	if b, err := json.Marshal(data); err == nil {
		e.Data = b
	}
	return e
}

// launchError is a launch this server can't run.
type launchError struct {
	typ, reason, msg string
}

func (e *launchError) Error() string { return e.msg }

// sessionError is an unknown session id.
type sessionError struct{ id string }

func (e *sessionError) Error() string {
	return fmt.Sprintf("no live session %q: it ended, or was never started by this backend; resolve the launch without sessionId", e.id)
}

// clusterError marks an error of the cluster side of a session start.
type clusterError struct{ err error }

func (e *clusterError) Error() string { return e.err.Error() }
func (e *clusterError) Unwrap() error { return e.err }

// rpcError maps an error to the codes of docs/ide-protocol.md.
func rpcError(err error) error {
	var rpc *jsonrpc2.Error
	if errors.As(err, &rpc) {
		return rpc
	}
	var le *launchError
	var se *sessionError
	var ke *kube.Error
	var ce *clusterError
	if diags, path, ok := configDiagnostics(err); ok {
		return errorWithData(CodeConfigInvalid, "the doppel configuration is invalid: "+firstLine(err.Error()),
			ConfigErrorData{Category: CategoryConfig, Path: path, Diagnostics: diags})
	}
	switch {
	case errors.As(err, &le):
		return errorWithData(CodeUnsupportedLaunch, le.msg, LaunchErrorData{Type: le.typ, Reason: le.reason})
	case errors.As(err, &se):
		return errorWithData(CodeUnknownSession, se.Error(), SessionErrorData{SessionID: se.id})
	case errors.As(err, &ke):
		return errorWithData(CodeCluster, ke.Error(), ClusterErrorData{Category: ke.Category(), Reason: ke.Reason})
	case errors.As(err, &ce):
		return errorWithData(CodeCluster, ce.Error(), ClusterErrorData{Category: CategoryCluster})
	case errors.Is(err, context.Canceled):
		return errorWithData(CodeCluster, "the session start was cancelled", ClusterErrorData{Category: CategoryUser, Reason: "cancelled"})
	}
	return errorWithData(CodeInternal, "internal error in doppel ide (see its log in the output channel): "+err.Error(),
		CategoryData{Category: CategoryInternal})
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " (and more)"
	}
	return s
}

// configDiagnostics turns config errors into diagnostics.
func configDiagnostics(err error) ([]Diagnostic, string, bool) {
	var list config.ErrorList
	var one *config.Error
	switch {
	case errors.As(err, &list):
	case errors.As(err, &one):
		list = config.ErrorList{one}
	default:
		return nil, "", false
	}
	path := ""
	for _, e := range list {
		if e.File != "" {
			path = e.File
			break
		}
	}
	return diagnosticsOf(list), path, true
}

// listTargets is `doppel ls -o json` for the picker.
func (s *Server) listTargets(ctx context.Context, p ListTargetsParams) (any, error) {
	ko := kube.Options{Kubeconfig: s.opts.Kube.Kubeconfig, Context: s.opts.Kube.Context, Namespace: s.opts.Kube.Namespace}
	if p.ConfigFile != "" {
		cfg, err := config.Load(p.ConfigFile)
		if err != nil {
			return nil, err
		}
		// The config's keys, under doppel ide's own flags (as startSession
		// takes them): the picker lists the cluster the session will use.
		if ko.Kubeconfig == "" {
			ko.Kubeconfig = cfg.KubeconfigPath()
		}
		if ko.Context == "" {
			ko.Context = cfg.KubeContext
		}
		if ko.Namespace == "" {
			ko.Namespace = cfg.Target.Namespace
		}
	}
	if p.Kubeconfig != "" {
		ko.Kubeconfig = p.Kubeconfig
	}
	if p.Context != "" {
		ko.Context = p.Context
	}
	if p.Namespace != "" {
		ko.Namespace = p.Namespace
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	l, err := s.opts.List(ctx, ko, kube.ListOptions{AllNamespaces: p.AllNamespaces})
	if err != nil {
		var ke *kube.Error
		if !errors.As(err, &ke) {
			err = &clusterError{err}
		}
		return nil, err
	}
	res := ListTargetsResult{Namespace: l.Namespace, Namespaces: l.Namespaces, Targets: []TargetInfo{}, Warnings: l.Warnings}
	if res.Namespaces == nil {
		res.Namespaces = []string{}
	}
	for _, t := range l.Targets {
		res.Targets = append(res.Targets, TargetInfo{Path: t.Path, Kind: t.Kind, Name: t.Name, Namespace: t.Namespace,
			Containers: t.Containers, Ready: t.Ready, ReadyPods: t.ReadyPods, Pods: t.Pods})
	}
	return res, nil
}

func listCluster(ctx context.Context, ko kube.Options, lo kube.ListOptions) (*kube.Listing, error) {
	c, err := kube.New(ko)
	if err != nil {
		return nil, err
	}
	return c.List(ctx, lo)
}

// get returns a live session.
func (s *Server) get(id string) (*ideSession, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A session whose run ended stays in the table until the IDE ends it
	// (its debuggee may still run), but takes no more launches or states.
	if sess := s.sessions[id]; sess != nil && sess.live() {
		return sess, nil
	}
	return nil, &sessionError{id}
}

// take removes a live session from the table and returns it.
func (s *Server) take(id string) (*ideSession, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[id]
	if sess == nil {
		return nil, &sessionError{id}
	}
	delete(s.sessions, id)
	return sess, nil
}

// endAll ends every session (shutdown, exit, the stream closed).
func (s *Server) endAll(reason string) {
	s.cancel()
	s.mu.Lock()
	all := make([]*ideSession, 0, len(s.sessions))
	for id, sess := range s.sessions {
		all = append(all, sess)
		delete(s.sessions, id)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, sess := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sess.end(reason, "")
		}()
	}
	wg.Wait()
}

func (s *Server) listSessions() ListSessionsResult {
	s.mu.Lock()
	all := make([]*ideSession, 0, len(s.sessions))
	for _, sess := range s.sessions {
		all = append(all, sess)
	}
	s.mu.Unlock()
	res := ListSessionsResult{Sessions: []SessionInfo{}}
	for _, sess := range all {
		res.Sessions = append(res.Sessions, sess.info())
	}
	sort.Slice(res.Sessions, func(i, j int) bool { return res.Sessions[i].Started < res.Sessions[j].Started })
	return res
}
