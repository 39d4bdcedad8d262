package protocol

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestErrnoNamesRoundTrip(t *testing.T) {
	for name, e := range errnoByName {
		if got := ErrnoName(e); got != name {
			t.Errorf("ErrnoName(%d) = %q, want %q", e, got, name)
		}
		if got, ok := ParseErrno(name); !ok || got != e {
			t.Errorf("ParseErrno(%q) = %v, %v", name, got, ok)
		}
	}
	if _, ok := ParseErrno("ENOTANERRNO"); ok {
		t.Error("ParseErrno accepted an unknown name")
	}
}

func TestWireError(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"errno", syscall.ECONNREFUSED, "ECONNREFUSED"},
		{"wrapped errno", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, "EHOSTUNREACH"},
		{"path error", &fs.PathError{Op: "open", Path: "/x", Err: syscall.ENOENT}, "ENOENT"},
		{"not exist sentinel", fmt.Errorf("gone: %w", fs.ErrNotExist), "ENOENT"},
		{"permission sentinel", fs.ErrPermission, "EACCES"},
		{"deadline", os.ErrDeadlineExceeded, "ETIMEDOUT"},
		{"context deadline", context.DeadlineExceeded, "ETIMEDOUT"},
		{"canceled", context.Canceled, "ECANCELED"},
		{"errno carrier", errnoCarrier{syscall.ENETUNREACH}, "ENETUNREACH"},
		{"plain", errors.New("something odd"), "EIO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := WireError(tt.err)
			if w.Errno != tt.want {
				t.Fatalf("errno %q, want %q", w.Errno, tt.want)
			}
			if w.Message == "" {
				t.Fatal("no message")
			}
		})
	}
	if WireError(nil) != nil {
		t.Fatal("WireError(nil) != nil")
	}
}

type errnoCarrier struct{ e syscall.Errno }

func (c errnoCarrier) Error() string        { return "carrier: " + c.e.Error() }
func (c errnoCarrier) Errno() syscall.Errno { return c.e }

func TestRemoteErrorIs(t *testing.T) {
	err := error(remoteError("dial tcp 10.0.0.1:80", &Error{Errno: "ECONNREFUSED", Message: "connect: connection refused"}))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Error("not ECONNREFUSED")
	}
	if errors.Is(err, syscall.ETIMEDOUT) {
		t.Error("is ETIMEDOUT")
	}
	var re *RemoteError
	if !errors.As(err, &re) || re.Errno != syscall.ECONNREFUSED {
		t.Fatalf("As: %#v", re)
	}

	notExist := remoteError("stat", &Error{Errno: "ENOENT"})
	if !errors.Is(notExist, fs.ErrNotExist) {
		t.Error("ENOENT is not fs.ErrNotExist")
	}
	timeout := remoteError("dial", &Error{Errno: "ETIMEDOUT"})
	var ne interface{ Timeout() bool }
	if !errors.As(error(timeout), &ne) || !ne.Timeout() {
		t.Error("ETIMEDOUT is not a timeout")
	}

	version := remoteError("hello", &Error{Code: CodeVersion, Message: "helper 2, agent 1"})
	if !errors.Is(version, ErrVersionMismatch) || errors.Is(version, ErrUnauthorized) {
		t.Error("code sentinel mismatch")
	}

	unknown := remoteError("stat", &Error{Errno: "EFUTURE", Message: "odd"})
	if unknown.Errno != 0 || !strings.Contains(unknown.Error(), "EFUTURE") {
		t.Errorf("unknown errno: %v", unknown)
	}

	// A RemoteError passed back through WireError keeps its errno and code.
	w := WireError(fmt.Errorf("wrapped: %w", version))
	if w.Code != CodeVersion {
		t.Errorf("code lost: %+v", w)
	}
}
