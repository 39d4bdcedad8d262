//go:build linux

package target

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startChild runs a sleeping child in the test's own namespaces: entering
// them needs no privilege, so this test runs as any user.
func startChild(t *testing.T, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	// Start returns before the child's execve is done: until sleep's stack
	// is set up, /proc shows no environment (or the forked test's).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid))
		environ, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", cmd.Process.Pid))
		if filepath.Base(exe) == "sleep" && (len(env) == 0 || len(environ) > 0) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child did not exec sleep within 5s")
		}
	}
	return cmd
}

func TestTarget(t *testing.T) {
	child := startChild(t, "DOPPEL_TEST=one", "SECOND=two=2", "EMPTY=")
	tg, err := Open(child.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	if tg.PID() != child.Process.Pid {
		t.Errorf("PID %d", tg.PID())
	}

	env, err := tg.Env()
	if err != nil || !slices.Equal(env, []string{"DOPPEL_TEST=one", "SECOND=two=2", "EMPTY="}) {
		t.Errorf("Env = %q, %v", env, err)
	}

	want, _ := os.Hostname()
	if h, err := tg.Hostname(); err != nil || h != want {
		t.Errorf("Hostname = %q, %v; want %q", h, err, want)
	}

	// A socket from the namespace thread works like any other.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fd, err := tg.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if flags, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); flags&unix.O_NONBLOCK == 0 {
		t.Error("socket is blocking")
	}
	port := l.Addr().(*net.TCPAddr).Port
	err = unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
	if err != nil && err != unix.EINPROGRESS {
		t.Fatalf("connect: %v", err)
	}
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	var st unix.Stat_t
	if err := unix.Fstat(tg.RootFD(), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Errorf("root fd: %v", err)
	}

	select {
	case <-tg.Exited():
		t.Fatal("Exited closed while the target runs")
	default:
	}
	child.Process.Kill()
	child.Wait()
	select {
	case <-tg.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("Exited not closed after the target died")
	}
	if _, err := tg.Env(); err == nil {
		t.Error("Env of an exited target succeeded")
	}
}

func TestOpenMissing(t *testing.T) {
	child := startChild(t)
	pid := child.Process.Pid
	child.Process.Kill()
	child.Wait()
	if _, err := Open(pid); err == nil {
		t.Fatal("Open of a reaped pid succeeded")
	}
	if _, err := Open(0); err == nil {
		t.Fatal("Open(0) succeeded")
	}
}

func TestNamespaceThreadIsNotMain(t *testing.T) {
	child := startChild(t)
	tg, err := Open(child.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	var tid int
	tg.InNetns(func() error {
		tid = unix.Gettid()
		return nil
	})
	if tid == os.Getpid() {
		t.Fatal("the namespace thread is the main thread")
	}
}
