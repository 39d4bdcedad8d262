//go:build integration && linux

package layer_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/doppel-dev/doppel/layer"
	"github.com/doppel-dev/doppel/layer/launcher"
)

// TestThreadsAndChildren: calls from other threads and from child processes
// are covered too.
func TestThreadsAndChildren(t *testing.T) {
	requireRoot(t)
	srv := httpServer(t, "server")
	h := newHandler()
	h.redirect(remoteHTTP, srv)
	probe := buildProbe(t, "static")
	r := run(t, h, runOpts{}, probe, "threads", remoteHTTP.String(), "8")
	if got := strings.Count(r.stdout, "peer="+remoteHTTP.String()+" body=hello from server"); got != 8 {
		t.Errorf("%d of 8 threads redirected", got)
	}
	r = run(t, h, runOpts{}, probe, "child", remoteHTTP.String())
	wantContains(t, "child", r.stdout, "peer="+remoteHTTP.String()+" body=hello from server")
	r = run(t, h, runOpts{}, "/bin/sh", "-c", "(exec "+probe+" http "+remoteHTTP.String()+") & wait")
	wantContains(t, "grandchild", r.stdout, "peer="+remoteHTTP.String()+" body=hello from server")
}

// TestRefusedSyscalls: i386 and x32 syscalls and io_uring_setup get ENOSYS.
// A kernel that kills a 64-bit process for int 0x80 itself (seen on a
// virtual machine here) lets nothing through either: then the run under
// the filter must end the same way.
func TestRefusedSyscalls(t *testing.T) {
	requireRoot(t)
	bin := filepath.Join(t.TempDir(), "legacy")
	if b, err := exec.Command(requireTool(t, "gcc"), "-O1", "-o", bin, "testdata/legacy.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, b)
	}
	for mode, want := range map[string]string{
		"int80":    "int80=-38\n",
		"x32":      "x32=-38\n",
		"io_uring": fmt.Sprintf("io_uring=-1 errno=%d\n", syscall.ENOSYS),
	} {
		// Without the filter the i386 getpid answers (where IA32
		// emulation is on): the filter is what refuses it.
		bare, err := exec.Command(bin, mode).Output()
		t.Logf("%s without the filter: %q %v", mode, bare, err)
		r := run(t, newHandler(), runOpts{}, bin, mode)
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.Sys().(syscall.WaitStatus).Signal() == syscall.SIGSEGV {
			if r.code != 128+int(syscall.SIGSEGV) || r.stdout != "" {
				t.Errorf("%s: the kernel kills the process for it without the filter, but under the filter: exit %d, %q", mode, r.code, r.stdout)
			}
			continue
		}
		wantContains(t, mode, r.stdout, want)
	}
}

func TestExitStatus(t *testing.T) {
	requireRoot(t)
	probe := buildProbe(t, "static")
	if r := run(t, newHandler(), runOpts{}, probe, "exit", "42"); r.code != 42 {
		t.Errorf("exit code %d, want 42", r.code)
	}
	if r := run(t, newHandler(), runOpts{}, "/bin/sh", "-c", "kill -TERM $$"); r.code != 128+int(syscall.SIGTERM) {
		t.Errorf("exit code %d, want %d", r.code, 128+int(syscall.SIGTERM))
	}
	if r := run(t, newHandler(), runOpts{}, "/nonexistent/program"); r.code != 127 {
		t.Errorf("exit code %d for a missing program, want 127", r.code)
	}
}

// TestSignalForwarded: SIGINT sent to the helper reaches the command.
func TestSignalForwarded(t *testing.T) {
	requireRoot(t)
	probe := buildProbe(t, "static")
	r := run(t, newHandler(), runOpts{forwardSignals: true, started: func(tree *launcher.Tree) {
		go func() {
			time.Sleep(300 * time.Millisecond) // let the probe set up its handler
			syscall.Kill(os.Getpid(), syscall.SIGINT)
		}()
	}}, probe, "waitsig")
	if r.code != 7 || !strings.Contains(r.stdout, "got=interrupt") {
		t.Errorf("exit %d, output %q: SIGINT did not reach the command", r.code, r.stdout)
	}
}

// TestTreeEnded: what the command leaves running is ended when it exits.
func TestTreeEnded(t *testing.T) {
	requireRoot(t)
	probe := buildProbe(t, "static")
	for _, argv := range [][]string{
		{probe, "spawn"},
		{"/bin/sh", "-c", "sleep 1000 & echo grandchild=$!"},
		{"/bin/sh", "-c", "(sh -c 'sleep 1000 & echo grandchild=$!' &) ; sleep 0.2"},
	} {
		r := run(t, newHandler(), runOpts{}, argv...)
		_, after, ok := strings.Cut(r.stdout, "grandchild=")
		if !ok {
			t.Fatalf("%v: no grandchild pid in %q", argv, r.stdout)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(after, "\n", 2)[0]))
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, 0); err == nil {
			state, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			t.Errorf("%v: grandchild %d still exists: %s", argv, pid, state)
		}
	}
}

// TestCloseWhileRunning: Close ends the receive loop while the process
// still runs (its wait in poll(2) is woken, not left until the process
// exits), in both ways of waiting.
func TestCloseWhileRunning(t *testing.T) {
	requireRoot(t)
	for _, wait := range []string{"thread", "netpoller"} {
		t.Run(wait, func(t *testing.T) {
			t.Setenv("DOPPEL_SECCOMP_WAIT", wait)
			sup := layer.NewSupervisor(newHandler(), layer.Options{})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			tree, err := launcher.Start(ctx, launcher.Spec{}, launcher.Command{
				Path: "/bin/sh", Args: []string{"/bin/sh", "-c", "sleep 30"}, Env: os.Environ(), KillGrace: 100 * time.Millisecond,
			}, sup.Serve)
			if err != nil {
				t.Fatal(err)
			}
			defer tree.Wait()
			defer tree.Kill()
			time.Sleep(200 * time.Millisecond) // the loop waits for calls now
			closed := make(chan struct{})
			go func() { sup.Close(); close(closed) }()
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Fatal("Close did not return while the process ran")
			}
		})
	}
}
