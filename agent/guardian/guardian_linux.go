package guardian

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Process is a running guardian, seen from the agent.
type Process struct {
	cmd  *exec.Cmd
	pipe *os.File // write end: closing it without a goodbye makes the guardian undo
	done chan struct{}
}

// readyTimeout bounds the guardian's start; stopTimeout its exit.
const (
	readyTimeout = 10 * time.Second
	stopTimeout  = 5 * time.Second
)

// Start re-executes this binary (/proc/self/exe) as the guardian env
// names, with job as JSON in that variable and args as its argv (argv[0]
// names it in ps). start starts the command: cmd.Start, or cmd.Start run
// in the namespace the guardian must live in. Start returns once the
// guardian is ready for duty.
func Start(env string, args []string, job any, start func(*exec.Cmd) error) (*Process, error) {
	spec, err := json.Marshal(job)
	if err != nil {
		return nil, err
	}
	pipeR, pipeW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		pipeR.Close()
		pipeW.Close()
		return nil, err
	}
	defer readyR.Close()
	vars := []string{env + "=" + string(spec)}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, env+"=") {
			vars = append(vars, kv)
		}
	}
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       args,
		Env:        vars,
		ExtraFiles: []*os.File{pipeR}, // fd 3
		Stdout:     readyW,
		Stderr:     os.Stderr,
		// Its own process group: a terminal's ^C for the agent must not
		// take the guardian along before the agent is gone. No parent-death
		// signal: outliving the agent is its job.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	err = start(cmd)
	pipeR.Close()
	readyW.Close()
	if err != nil {
		pipeW.Close()
		return nil, fmt.Errorf("starting the guardian: %w", err)
	}
	p := &Process{cmd: cmd, pipe: pipeW, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	readyR.SetReadDeadline(time.Now().Add(readyTimeout))
	line, err := bufio.NewReader(readyR).ReadString('\n')
	if err != nil || line != "ready\n" {
		pipeW.Close()
		cmd.Process.Kill()
		<-p.done
		return nil, fmt.Errorf("the guardian did not get ready (%q, %v): does the agent's main call MaybeRunGuardian first?", line, err)
	}
	return p, nil
}

// Stop lets the guardian go and waits for it to exit (killing it after
// stopTimeout). undone says the agent has undone its work itself: the
// guardian just exits; otherwise it undoes the work before exiting.
func (p *Process) Stop(undone bool) {
	if undone {
		p.pipe.Write([]byte{'q'})
	}
	p.pipe.Close()
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// Exited is closed when the guardian process has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// PID is the guardian's process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// MaybeRun turns this process into the guardian env names if it was
// started as one, and exits with run's result; otherwise it returns at
// once. run gets the job (JSON) and calls wait once it is ready for duty:
// wait tells the agent so, then blocks until the agent says goodbye
// (false: nothing to undo) or dies, or SIGTERM comes (true: undo now).
// SIGINT and SIGHUP are ignored.
func MaybeRun(env string, run func(job []byte, wait func() bool) int) {
	job, ok := os.LookupEnv(env)
	if !ok {
		return
	}
	os.Unsetenv(env)
	signal.Ignore(syscall.SIGINT, syscall.SIGHUP, syscall.SIGPIPE)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	unix.CloseOnExec(3) // the guardian's own children need no part of the pipe
	pipe := os.NewFile(3, "agent pipe")
	wait := func() bool {
		if _, err := os.Stdout.WriteString("ready\n"); err != nil {
			os.Exit(2)
		}
		os.Stdout.Close()
		goodbye := make(chan bool, 1)
		go func() {
			b := make([]byte, 1)
			n, _ := pipe.Read(b)
			goodbye <- n == 1 && b[0] == 'q'
		}()
		select {
		case q := <-goodbye:
			return !q
		case <-term:
			return true
		}
	}
	os.Exit(run([]byte(job), wait))
}
