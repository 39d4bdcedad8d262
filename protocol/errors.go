package protocol

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// Errnos travel by name because their numbers differ between the agent's
// Linux and the helper's OS (ECONNREFUSED is 111 on Linux, 61 on macOS).
// The table holds the names that exist on every platform the helper
// builds for; an agent errno outside it travels as EIO with its own name
// in the message.
var errnoByName = map[string]syscall.Errno{
	"EPERM":           syscall.EPERM,
	"ENOENT":          syscall.ENOENT,
	"ESRCH":           syscall.ESRCH,
	"EINTR":           syscall.EINTR,
	"EIO":             syscall.EIO,
	"ENXIO":           syscall.ENXIO,
	"E2BIG":           syscall.E2BIG,
	"EBADF":           syscall.EBADF,
	"EAGAIN":          syscall.EAGAIN,
	"ENOMEM":          syscall.ENOMEM,
	"EACCES":          syscall.EACCES,
	"EFAULT":          syscall.EFAULT,
	"EBUSY":           syscall.EBUSY,
	"EEXIST":          syscall.EEXIST,
	"EXDEV":           syscall.EXDEV,
	"ENODEV":          syscall.ENODEV,
	"ENOTDIR":         syscall.ENOTDIR,
	"EISDIR":          syscall.EISDIR,
	"EINVAL":          syscall.EINVAL,
	"ENFILE":          syscall.ENFILE,
	"EMFILE":          syscall.EMFILE,
	"EFBIG":           syscall.EFBIG,
	"ENOSPC":          syscall.ENOSPC,
	"EROFS":           syscall.EROFS,
	"EMLINK":          syscall.EMLINK,
	"EPIPE":           syscall.EPIPE,
	"ERANGE":          syscall.ERANGE,
	"ENAMETOOLONG":    syscall.ENAMETOOLONG,
	"ENOSYS":          syscall.ENOSYS,
	"ENOTEMPTY":       syscall.ENOTEMPTY,
	"ELOOP":           syscall.ELOOP,
	"ENOTSUP":         syscall.ENOTSUP,
	"EPROTO":          syscall.EPROTO,
	"EMSGSIZE":        syscall.EMSGSIZE,
	"EPROTONOSUPPORT": syscall.EPROTONOSUPPORT,
	"EAFNOSUPPORT":    syscall.EAFNOSUPPORT,
	"EADDRINUSE":      syscall.EADDRINUSE,
	"EADDRNOTAVAIL":   syscall.EADDRNOTAVAIL,
	"ENETDOWN":        syscall.ENETDOWN,
	"ENETUNREACH":     syscall.ENETUNREACH,
	"ENETRESET":       syscall.ENETRESET,
	"ECONNABORTED":    syscall.ECONNABORTED,
	"ECONNRESET":      syscall.ECONNRESET,
	"ENOBUFS":         syscall.ENOBUFS,
	"EISCONN":         syscall.EISCONN,
	"ENOTCONN":        syscall.ENOTCONN,
	"ETIMEDOUT":       syscall.ETIMEDOUT,
	"ECONNREFUSED":    syscall.ECONNREFUSED,
	"EHOSTDOWN":       syscall.EHOSTDOWN,
	"EHOSTUNREACH":    syscall.EHOSTUNREACH,
	"EALREADY":        syscall.EALREADY,
	"EINPROGRESS":     syscall.EINPROGRESS,
	"ECANCELED":       syscall.ECANCELED,
	"EILSEQ":          syscall.EILSEQ,
}

var nameByErrno = func() map[syscall.Errno]string {
	m := make(map[syscall.Errno]string, len(errnoByName))
	for name, e := range errnoByName {
		// EAGAIN/EWOULDBLOCK and ENOTSUP/EOPNOTSUPP share numbers on some
		// systems; the table holds one name of each pair, so this is 1:1.
		m[e] = name
	}
	return m
}()

// ErrnoName returns the wire name of e ("ECONNREFUSED"), or "" when e has
// none.
func ErrnoName(e syscall.Errno) string { return nameByErrno[e] }

// ParseErrno returns the local errno for a wire name.
func ParseErrno(name string) (syscall.Errno, bool) {
	e, ok := errnoByName[name]
	return e, ok
}

// Protocol conditions carried in Error.Code.
const (
	CodeUnauthorized   = "unauthorized"
	CodeVersion        = "version"
	CodeUnknownSession = "unknown_session"
	CodeSessionInUse   = "session_in_use"
	CodeBadRequest     = "bad_request"
	CodeUnknownOp      = "unknown_op"
	CodeShuttingDown   = "shutting_down"
	CodeInternal       = "internal" // a bug in the agent, reported instead of crashing it
)

// Sentinels for the protocol conditions, matched by errors.Is on a
// *RemoteError with that Code.
var (
	ErrUnauthorized    = errors.New("protocol: unauthorized")
	ErrVersionMismatch = errors.New("protocol: version mismatch")
	ErrUnknownSession  = errors.New("protocol: unknown session")
	ErrSessionInUse    = errors.New("protocol: session in use")
	ErrBadRequest      = errors.New("protocol: bad request")
	ErrUnknownOp       = errors.New("protocol: unknown operation")
	ErrShuttingDown    = errors.New("protocol: agent shutting down")
)

var errByCode = map[string]error{
	CodeUnauthorized:   ErrUnauthorized,
	CodeVersion:        ErrVersionMismatch,
	CodeUnknownSession: ErrUnknownSession,
	CodeSessionInUse:   ErrSessionInUse,
	CodeBadRequest:     ErrBadRequest,
	CodeUnknownOp:      ErrUnknownOp,
	CodeShuttingDown:   ErrShuttingDown,
}

// RemoteError is a failure the agent reported. Errno is the local errno
// with the agent's errno name (0 when the name is unknown here), so the
// helper can hand the very same errno to the local process.
type RemoteError struct {
	Op      string
	Errno   syscall.Errno
	Code    string
	Message string
}

func (e *RemoteError) Error() string {
	what := e.Code
	if e.Errno != 0 {
		what = ErrnoName(e.Errno)
	}
	prefix := "agent: "
	if e.Op != "" {
		prefix += e.Op + ": "
	}
	switch {
	case e.Message == "":
		return prefix + what
	case what == "":
		return prefix + e.Message
	default:
		return fmt.Sprintf("%s%s (%s)", prefix, e.Message, what)
	}
}

// Is matches the errno (errors.Is(err, syscall.ECONNREFUSED)), the
// protocol sentinels, and the io/fs sentinels the errno implies
// (errors.Is(err, fs.ErrNotExist) for ENOENT).
func (e *RemoteError) Is(target error) bool {
	if e.Errno != 0 {
		if target == e.Errno {
			return true
		}
		if e.Errno.Is(target) {
			return true
		}
	}
	if e.Code != "" {
		if s, ok := errByCode[e.Code]; ok && s == target {
			return true
		}
	}
	return false
}

// Timeout reports whether the agent timed out, so a RemoteError satisfies
// net.Error-style checks.
func (e *RemoteError) Timeout() bool { return e.Errno == syscall.ETIMEDOUT }

// remoteError turns a wire error into a *RemoteError for op.
func remoteError(op string, w *Error) *RemoteError {
	re := &RemoteError{Op: op, Code: w.Code, Message: w.Message}
	if w.Errno != "" {
		if e, ok := ParseErrno(w.Errno); ok {
			re.Errno = e
		} else if re.Message == "" {
			re.Message = w.Errno
		} else {
			re.Message += " (" + w.Errno + ")"
		}
	}
	return re
}

// ErrnoError is an error that carries the errno the agent should report.
// The agent's packages implement it where the plain Go error loses the
// errno (a dial timeout, a context cancellation).
type ErrnoError interface {
	error
	Errno() syscall.Errno
}

// WireError converts a Go error from the agent's side into its wire form:
// the errno it carries if any (an ErrnoError or a syscall.Errno anywhere in
// the chain, or the io/fs and context sentinels), EIO otherwise.
func WireError(err error) *Error {
	if err == nil {
		return nil
	}
	var re *RemoteError
	if errors.As(err, &re) {
		w := &Error{Code: re.Code, Message: re.Message}
		if re.Errno != 0 {
			w.Errno = ErrnoName(re.Errno)
		}
		return w
	}
	return &Error{Errno: errnoName(errnoOf(err)), Message: err.Error()}
}

func errnoName(e syscall.Errno) string {
	if name := ErrnoName(e); name != "" {
		return name
	}
	return "EIO"
}

func errnoOf(err error) syscall.Errno {
	var withErrno ErrnoError
	if errors.As(err, &withErrno) {
		return withErrno.Errno()
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return syscall.ETIMEDOUT
	case errors.Is(err, context.Canceled):
		return syscall.ECANCELED
	case errors.Is(err, fs.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, fs.ErrPermission):
		return syscall.EACCES
	case errors.Is(err, fs.ErrExist):
		return syscall.EEXIST
	case errors.Is(err, fs.ErrInvalid):
		return syscall.EINVAL
	case errors.Is(err, ErrMessageTooLarge):
		return syscall.E2BIG
	}
	return syscall.EIO
}

// codeError builds a wire error for a protocol condition.
func codeError(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
