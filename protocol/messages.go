package protocol

import (
	"encoding/json"
	"io/fs"
	"time"
)

// This file holds the JSON messages of SPEC.md, one Go type per message.
// Field names on the wire are part of the contract: rename a Go field
// freely, never its json tag.

// Hello is the first message of a connection, sent by the helper on the
// first stream it opens. Protocol and Token keep their tags in every
// version so that any agent can refuse any helper with a clear error.
type Hello struct {
	// Protocol is the version the helper speaks; Dial fills in Version.
	Protocol int `json:"protocol"`
	// SessionID names the helper's session; it stays the same across
	// transport reconnects so the agent can resume the session.
	SessionID string `json:"session"`
	// Resume asks the agent to reattach to the session's kept state.
	Resume bool `json:"resume,omitempty"`
	// Token is the session secret: 64 hex digits (see NewToken).
	Token string `json:"token"`
	// Client says who connects, for the agent's logs.
	Client ClientInfo `json:"client"`
}

// ClientInfo describes the helper process on the developer's machine.
type ClientInfo struct {
	User    string `json:"user,omitempty"`
	Host    string `json:"host,omitempty"`
	Version string `json:"version,omitempty"`
	PID     int    `json:"pid,omitempty"`
}

// HelloReply is the agent's answer to Hello. With Error set the agent
// closes the connection after sending it.
type HelloReply struct {
	Protocol     int    `json:"protocol"`
	AgentVersion string `json:"agent,omitempty"`
	// Resumed is true when the agent reattached kept session state.
	Resumed bool `json:"resumed,omitempty"`
	// KeepaliveMS is how long the agent lets the session go without any
	// message from the helper before it drops the transport.
	KeepaliveMS int64 `json:"keepalive_ms,omitempty"`
	// Features are the optional parts of the protocol the agent speaks
	// (FeatureBulk); a helper uses no other.
	Features []string `json:"features,omitempty"`
	Error    *Error   `json:"error,omitempty"`
}

// Error is a failure on the wire. Errno names an errno ("ECONNREFUSED")
// the helper can return to the local process unchanged; Code names a
// protocol condition ("unauthorized", "version", ...) that has no errno.
type Error struct {
	Errno   string `json:"errno,omitempty"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// Control-stream operations.
const (
	OpEnv      = "env"
	OpHostname = "hostname"
	OpDNS      = "dns"
	OpStat     = "stat"
	OpLstat    = "lstat"
	OpReadDir  = "readdir"
	OpReadlink = "readlink"
	OpPing     = "ping"
	OpAbort    = "abort"
	OpClose    = "close"
)

// Request is a control-stream request from the helper.
type Request struct {
	ID uint64 `json:"id"`
	Op string `json:"op"`
	// TimeoutMS, when positive, bounds the agent's work on the request; the
	// helper derives it from its context deadline.
	TimeoutMS int64           `json:"timeout_ms,omitempty"`
	Args      json.RawMessage `json:"args,omitempty"`
}

// Response answers the Request with the same ID; exactly one of Error and
// Result is meaningful.
type Response struct {
	ID     uint64          `json:"id"`
	Error  *Error          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// EnvResult is the target process's environment in /proc/PID/environ order.
type EnvResult struct {
	Env []string `json:"env"`
}

// HostnameResult is the target's hostname.
type HostnameResult struct {
	Hostname string `json:"hostname"`
}

// DNSArgs carries one raw DNS message (RFC 1035, without TCP length prefix).
type DNSArgs struct {
	Query []byte `json:"query"`
}

// DNSResult carries the pod resolver's raw answer.
type DNSResult struct {
	Answer []byte `json:"answer"`
}

// PathArgs names a path in the target's root (stat, lstat, readlink).
type PathArgs struct {
	Path string `json:"path"`
}

// StatResult answers stat and lstat.
type StatResult struct {
	Info FileInfo `json:"info"`
}

// ReadDirArgs asks for the directory's entries from index Offset on.
type ReadDirArgs struct {
	Path   string `json:"path"`
	Offset int    `json:"offset,omitempty"`
}

// ReadDirResult is one page of entries sorted by name. Next is the offset
// of the following page, 0 when this page is the last.
type ReadDirResult struct {
	Entries []DirEntry `json:"entries"`
	Next    int        `json:"next,omitempty"`
}

// ReadlinkResult is a symbolic link's content.
type ReadlinkResult struct {
	Target string `json:"target"`
}

// AbortArgs asks the agent to tear down the data stream with this yamux
// stream id at once (the helper's full close of a connection or file).
type AbortArgs struct {
	Stream uint32 `json:"stream"`
}

// Empty is the result of ping, abort and close, and the args of
// operations that take none.
type Empty struct{}

// Data-stream kinds.
const (
	StreamDial = "dial"
	StreamOpen = "open"
)

// StreamHeader is the first message on a data stream the helper opens.
type StreamHeader struct {
	Kind string `json:"kind"`
	// dial: Network is tcp, tcp4, tcp6, udp, udp4 or udp6; Address is an
	// IP literal and port ("10.0.0.7:5432", "[fd00::1]:53").
	Network   string `json:"network,omitempty"`
	Address   string `json:"address,omitempty"`
	TimeoutMS int64  `json:"timeout_ms,omitempty"`
	// Early (dial tcp): the helper writes without waiting for the reply,
	// which the agent may then send with the pod's first bytes.
	Early bool `json:"early,omitempty"`
	// open: Path is absolute in the target's root.
	Path string `json:"path,omitempty"`
}

// DialReply answers a dial header. Local and Remote are the pod-side
// socket's addresses.
type DialReply struct {
	Error  *Error `json:"error,omitempty"`
	Local  string `json:"local,omitempty"`
	Remote string `json:"remote,omitempty"`
}

// OpenReply answers an open header; the file's bytes follow it.
type OpenReply struct {
	Error *Error    `json:"error,omitempty"`
	Info  *FileInfo `json:"info,omitempty"`
}

// FileInfo is a stat(2) result of a file in the target's root. Mode is
// the raw st_mode (type and permission bits, identical on every Unix);
// times are nanoseconds since the Unix epoch.
type FileInfo struct {
	Name    string `json:"name"`
	Mode    uint32 `json:"mode"`
	Size    int64  `json:"size"`
	UID     uint32 `json:"uid"`
	GID     uint32 `json:"gid"`
	Nlink   uint64 `json:"nlink,omitempty"`
	Ino     uint64 `json:"ino,omitempty"`
	Dev     uint64 `json:"dev,omitempty"`
	Rdev    uint64 `json:"rdev,omitempty"`
	Blksize int64  `json:"blksize,omitempty"`
	Blocks  int64  `json:"blocks,omitempty"`
	Atime   int64  `json:"atime,omitempty"`
	Mtime   int64  `json:"mtime,omitempty"`
	Ctime   int64  `json:"ctime,omitempty"`
}

// S_IFMT and friends: the file type bits of st_mode, the same on every Unix.
const (
	ModeTypeMask = 0o170000
	ModeDir      = 0o040000
	ModeRegular  = 0o100000
	ModeSymlink  = 0o120000
	ModeFIFO     = 0o010000
	ModeSocket   = 0o140000
	ModeChar     = 0o020000
	ModeBlock    = 0o060000
)

// FileMode converts Mode to an io/fs mode.
func (fi FileInfo) FileMode() fs.FileMode {
	return fileMode(fi.Mode)
}

// IsDir reports whether the file is a directory.
func (fi FileInfo) IsDir() bool { return fi.Mode&ModeTypeMask == ModeDir }

// ModTime is Mtime as a time.
func (fi FileInfo) ModTime() time.Time { return time.Unix(0, fi.Mtime) }

// DirEntry is one directory entry, as getdents64 reports it. Type holds
// the S_IFMT bits of the entry, 0 when the filesystem did not say.
type DirEntry struct {
	Name string `json:"name"`
	Type uint32 `json:"type,omitempty"`
	Ino  uint64 `json:"ino,omitempty"`
}

func fileMode(mode uint32) fs.FileMode {
	m := fs.FileMode(mode & 0o777)
	switch mode & ModeTypeMask {
	case ModeDir:
		m |= fs.ModeDir
	case ModeSymlink:
		m |= fs.ModeSymlink
	case ModeFIFO:
		m |= fs.ModeNamedPipe
	case ModeSocket:
		m |= fs.ModeSocket
	case ModeChar:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case ModeBlock:
		m |= fs.ModeDevice
	}
	if mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}
