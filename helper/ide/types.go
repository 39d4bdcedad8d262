package ide

import "encoding/json"

// The method types of docs/ide-protocol.md, version 1: that page is the
// contract; these are its Go form. Names are camelCase; absent optional
// fields are omitted.

// ProtocolVersion is the version initialize reports.
const ProtocolVersion = 1

// Methods, client to server.
const (
	MethodInitialize     = "initialize"
	MethodShutdown       = "shutdown"
	MethodExit           = "exit" // a notification
	MethodListTargets    = "doppel/listTargets"
	MethodGetSchema      = "doppel/getSchema"
	MethodCheckConfig    = "doppel/checkConfig"
	MethodResolveLaunch  = "doppel/resolveLaunch"
	MethodEndSession     = "doppel/endSession"
	MethodDebuggeeState  = "doppel/debuggeeState"
	MethodListSessions   = "doppel/listSessions"
	NotifyProgress       = "doppel/progress"
	NotifySessionState   = "doppel/sessionState"
	NotifyNotice         = "doppel/notice"
	NotifyConfigDiagnose = "doppel/configDiagnostics"
)

// Error codes besides JSON-RPC's own.
const (
	CodeServerNotInitialized = -32002
	CodeConfigInvalid        = -32010
	CodeCluster              = -32011
	CodeUnknownSession       = -32012
	CodeUnsupportedLaunch    = -32013
	CodeInternal             = -32099
)

// Error categories (DESIGN.md "Errors and logs").
const (
	CategoryUser     = "user"
	CategoryConfig   = "config"
	CategoryCluster  = "cluster"
	CategoryInternal = "internal"
)

// InitializeParams opens the conversation.
type InitializeParams struct {
	ClientName       string   `json:"clientName,omitempty"`
	ClientVersion    string   `json:"clientVersion,omitempty"`
	WorkspaceFolders []string `json:"workspaceFolders,omitempty"`
}

// InitializeResult says who answers and what it can launch.
type InitializeResult struct {
	ServerName      string   `json:"serverName"`
	ServerVersion   string   `json:"serverVersion"`
	ProtocolVersion int      `json:"protocolVersion"`
	DebugTypes      []string `json:"debugTypes"`
}

// ListTargetsParams chooses the cluster and namespace; all optional.
type ListTargetsParams struct {
	Namespace     string `json:"namespace,omitempty"`
	AllNamespaces bool   `json:"allNamespaces,omitempty"`
	Context       string `json:"context,omitempty"`
	Kubeconfig    string `json:"kubeconfig,omitempty"`
	// ConfigFile supplies kubeconfig, kube_context and target.namespace.
	ConfigFile string `json:"configFile,omitempty"`
}

// ListTargetsResult is `doppel ls -o json`, in camelCase.
type ListTargetsResult struct {
	Namespace  string       `json:"namespace"`
	Namespaces []string     `json:"namespaces"`
	Targets    []TargetInfo `json:"targets"`
	Warnings   []string     `json:"warnings,omitempty"`
}

// TargetInfo is one entry of the picker.
type TargetInfo struct {
	Path       string   `json:"path"`
	Kind       string   `json:"kind"`
	Name       string   `json:"name"`
	Namespace  string   `json:"namespace"`
	Containers []string `json:"containers"`
	Ready      bool     `json:"ready"`
	ReadyPods  int      `json:"readyPods"`
	Pods       int      `json:"pods"`
}

// GetSchemaResult is the config's JSON schema.
type GetSchemaResult struct {
	Schema json.RawMessage `json:"schema"`
}

// CheckConfigParams names a config file and, optionally, its unsaved text.
type CheckConfigParams struct {
	Path string  `json:"path"`
	Text *string `json:"text,omitempty"`
}

// CheckConfigResult lists what is wrong; empty when the file is valid.
type CheckConfigResult struct {
	Diagnostics []Diagnostic `json:"diagnostics"`
}

// Diagnostic is one finding in a config file.
type Diagnostic struct {
	Severity string `json:"severity"` // "error" or "warning"
	Message  string `json:"message"`
	KeyPath  string `json:"keyPath,omitempty"`
	Line     int    `json:"line"`   // 1-based, 0 when unknown
	Column   int    `json:"column"` // 1-based, 0 when unknown
	Code     string `json:"code,omitempty"`
}

// ResolveLaunchParams asks for a debug launch under doppel.
type ResolveLaunchParams struct {
	// Launch is the IDE's launch configuration, variables substituted.
	Launch          map[string]any `json:"launch"`
	WorkspaceFolder string         `json:"workspaceFolder,omitempty"`
	// Target and Namespace override the config's ("targetless" allowed).
	Target     string `json:"target,omitempty"`
	Namespace  string `json:"namespace,omitempty"`
	ConfigFile string `json:"configFile,omitempty"`
	// SessionID reuses that live session.
	SessionID string `json:"sessionId,omitempty"`
	// Wrap: the IDE runs the program itself, prefixed with the result's
	// Wrapper, which it needs for any statically linked program. For type
	// go no Delve is started then (GoLand runs its own).
	Wrap bool `json:"wrap,omitempty"`
}

// ResolveLaunchResult is the launch configuration to run.
type ResolveLaunchResult struct {
	SessionID string         `json:"sessionId"`
	Launch    map[string]any `json:"launch"`
	Target    *TargetRef     `json:"target,omitempty"`
	Warnings  []string       `json:"warnings,omitempty"`
	// Wrapper, with the launch's env, runs the command that follows it
	// inside the session under its launcher (`doppel wrap --`): set for
	// every launch but Delve's.
	Wrapper []string `json:"wrapper,omitempty"`
}

// TargetRef is the resolved target of a session.
type TargetRef struct {
	Path      string `json:"path"`
	Namespace string `json:"namespace,omitempty"`
	Pod       string `json:"pod,omitempty"`
	Container string `json:"container,omitempty"`
}

// SessionParams names a session.
type SessionParams struct {
	SessionID string `json:"sessionId"`
}

// DebuggeeStateParams says the debuggee stopped or runs again.
type DebuggeeStateParams struct {
	SessionID string `json:"sessionId"`
	Paused    bool   `json:"paused"`
}

// ListSessionsResult lists the live sessions.
type ListSessionsResult struct {
	Sessions []SessionInfo `json:"sessions"`
}

// SessionInfo describes one session.
type SessionInfo struct {
	SessionID string     `json:"sessionId"`
	Target    *TargetRef `json:"target,omitempty"`
	State     string     `json:"state"`
	Paused    bool       `json:"paused"`
	Started   string     `json:"started"` // RFC 3339
}

// Session states.
const (
	StateStarting     = "starting"
	StateReady        = "ready"
	StateReconnecting = "reconnecting"
	StateEnded        = "ended"
)

// ProgressParams is one step of a session's start.
type ProgressParams struct {
	SessionID string `json:"sessionId"`
	Step      string `json:"step"`
	ElapsedMS int64  `json:"elapsedMs"`
}

// SessionStateParams is a session's new state.
type SessionStateParams struct {
	SessionID string `json:"sessionId"`
	State     string `json:"state"`
	Reason    string `json:"reason,omitempty"`
	Category  string `json:"category,omitempty"`
}

// NoticeParams is something the user should know about a session.
type NoticeParams struct {
	SessionID string `json:"sessionId,omitempty"`
	Severity  string `json:"severity"` // info, warning, error
	Message   string `json:"message"`
}

// ConfigDiagnosticsParams are a config file's findings after it changed.
type ConfigDiagnosticsParams struct {
	Path        string       `json:"path"`
	Diagnostics []Diagnostic `json:"diagnostics"`
}

// ConfigErrorData is the data of CodeConfigInvalid.
type ConfigErrorData struct {
	Category    string       `json:"category"`
	Path        string       `json:"path,omitempty"`
	Diagnostics []Diagnostic `json:"diagnostics"`
}

// ClusterErrorData is the data of CodeCluster.
type ClusterErrorData struct {
	Category string `json:"category"`
	Reason   string `json:"reason,omitempty"`
}

// SessionErrorData is the data of CodeUnknownSession.
type SessionErrorData struct {
	SessionID string `json:"sessionId"`
}

// LaunchErrorData is the data of CodeUnsupportedLaunch.
type LaunchErrorData struct {
	Type   string `json:"type"`
	Reason string `json:"reason,omitempty"`
}

// CategoryData is the data of CodeInternal and of errors with a category
// only.
type CategoryData struct {
	Category string `json:"category"`
}
