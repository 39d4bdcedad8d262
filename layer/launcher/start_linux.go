package launcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Tree is a launched command and the processes it starts.
type Tree struct {
	// Pid is the command's process id (the launcher execs into it).
	Pid int

	proc     *os.Process
	cmd      Command
	exited   chan struct{} // closed when the reaper has reaped Pid
	status   unix.WaitStatus
	members  map[int]uint64 // descendants seen: pid -> start time
	start    uint64         // the command's start time, once read
	stopFwd  func()
	waitOnce sync.Once
	code     int
}

// Start runs cmd under the filter of spec. serve receives the listener and
// must start answering it before returning (layer.Supervisor.Serve does):
// the command's first trapped call waits for it. The helper becomes a child
// subreaper for the lifetime of the process.
func Start(ctx context.Context, spec Spec, cmd Command, serve func(listener *os.File) error) (*Tree, error) {
	if len(cmd.Args) == 0 {
		cmd.Args = []string{cmd.Path}
	}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	r, err := theReaper()
	if err != nil {
		return nil, err
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	parentEnd := os.NewFile(uintptr(pair[0]), "launcher-parent")
	childEnd := os.NewFile(uintptr(pair[1]), "launcher-child")
	defer parentEnd.Close()

	raw, err := json.Marshal(launchSpec{Filter: spec.Filter, Path: cmd.Path, Args: cmd.Args})
	if err != nil {
		childEnd.Close()
		return nil, err
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		childEnd.Close()
		return nil, err
	}
	defer devnull.Close()
	orNull := func(f *os.File) *os.File {
		if f == nil {
			return devnull
		}
		return f
	}
	attr := &os.ProcAttr{
		Dir:   cmd.Dir,
		Env:   append(launcherEnv(cmd.Env), envSpec+"="+string(raw)),
		Files: []*os.File{orNull(cmd.Stdin), orNull(cmd.Stdout), orNull(cmd.Stderr), childEnd},
		// A helper killed with SIGKILL can't end the tree: the kernel kills
		// the command with it (the flag survives the exec into the command;
		// its own children are reaped by the helper's reaper while it lives).
		Sys: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}
	t := &Tree{cmd: cmd, exited: make(chan struct{}), members: map[int]uint64{}}
	// Started under the reaper's lock: it must know Pid before reaping it.
	r.mu.Lock()
	t.proc, err = os.StartProcess("/proc/self/exe", []string{"doppel-launcher"}, attr)
	if err == nil {
		t.Pid = t.proc.Pid
		r.trees[t.Pid] = t
	}
	r.mu.Unlock()
	childEnd.Close()
	if err != nil {
		return nil, fmt.Errorf("start launcher: %w", err)
	}
	r.poke()

	listener, err := receiveListener(ctx, parentEnd)
	if err == nil {
		if err = serve(listener); err != nil {
			err = fmt.Errorf("serve listener: %w", err)
		}
	}
	if err == nil {
		if _, err = parentEnd.Write([]byte{1}); err != nil {
			err = fmt.Errorf("ack launcher: %w", err)
		}
	}
	if err != nil {
		t.proc.Kill()
		t.Wait()
		return nil, err
	}
	if cmd.ForwardSignals {
		t.forwardSignals()
	}
	return t, nil
}

// receiveListener reads the launcher's message: the listener fd, or the
// error that stopped it.
func receiveListener(ctx context.Context, f *os.File) (*os.File, error) {
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	uc := c.(*net.UnixConn)
	stop := context.AfterFunc(ctx, func() { uc.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("launcher: %w", err)
	}
	if n == 0 {
		return nil, errors.New("launcher exited before installing the filter")
	}
	if buf[0] == 'E' {
		return nil, fmt.Errorf("launcher: %s", buf[1:n])
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("launcher: no listener in message (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("launcher: bad listener rights (%v)", err)
	}
	unix.CloseOnExec(fds[0])
	return os.NewFile(uintptr(fds[0]), "seccomp-listener"), nil
}

// Signal sends sig to the command.
func (t *Tree) Signal(sig os.Signal) error { return t.proc.Signal(sig) }

// Exited is closed when the command has exited (the rest of the tree may
// still be running until Wait has ended it).
func (t *Tree) Exited() <-chan struct{} { return t.exited }

// Wait waits for the command to exit, then ends every process left in its
// tree (SIGTERM, then SIGKILL after KillGrace) and returns the command's exit
// code: its exit status, or 128 + the signal that killed it.
func (t *Tree) Wait() int {
	<-t.exited
	t.waitOnce.Do(func() {
		if t.stopFwd != nil {
			t.stopFwd()
		}
		grace := t.cmd.KillGrace
		if grace == 0 {
			grace = 2 * time.Second
		}
		theReaperNow().endTree(t, grace)
		t.proc.Release()
		ws := t.status
		t.code = ExitCode(ws.Exited(), ws.ExitStatus(), int(ws.Signal()))
	})
	return t.code
}

// Kill ends the command and everything it started, and waits for them.
func (t *Tree) Kill() int {
	t.proc.Kill()
	return t.Wait()
}

// forwardSignals relays the usual terminating signals to the command until
// it exits.
func (t *Tree) forwardSignals() {
	ch := make(chan os.Signal, 4)
	sigs := []os.Signal{unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT}
	signal.Notify(ch, sigs...)
	done := make(chan struct{})
	t.stopFwd = func() {
		signal.Stop(ch)
		close(done)
	}
	go func() {
		for {
			select {
			case <-done:
				return
			case sig := <-ch:
				if (sig == unix.SIGINT || sig == unix.SIGQUIT) && terminalSentToGroup() {
					continue
				}
				t.proc.Signal(sig)
			}
		}
	}()
}

// terminalSentToGroup guesses whether a SIGINT/SIGQUIT came from the
// terminal: then it went to the whole foreground process group, the command
// included, because the helper's group is the terminal's foreground group.
func terminalSentToGroup() bool {
	pgrp, err := unix.IoctlGetInt(0, unix.TIOCGPGRP)
	return err == nil && pgrp == syscall.Getpgrp()
}
