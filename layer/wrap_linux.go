package layer

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/doppel-dev/doppel/layer/launcher"
)

// `doppel wrap -- CMD` asks the session named by DOPPEL_LAYER_SOCKET to run
// CMD under its launcher, with the wrapper's own stdin, stdout and stderr,
// and stands for it: signals sent to the wrapper reach CMD, CMD's exit code
// is the wrapper's, and a wrapper that goes away takes CMD's tree with it.
// For programs preloading can't reach (statically linked Go, and anything a
// debugger in such an IDE launch starts) when the IDE, not doppel, starts
// the process: CMD is the session helper's child, so the supervisor may
// read its memory under Yama's ptrace_scope=1 too.
//
// Messages on the SOCK_SEQPACKET connection:
//
//	wrapper -> server  "DOPPELR" + RunRequest (JSON), SCM_RIGHTS stdin, stdout, stderr
//	server -> wrapper  "P" + pid, or "E" + reason
//	wrapper -> server  "S" + signal number (any number of times)
//	server -> wrapper  "X" + exit code (128 + signal if killed)
const runMagic = "DOPPELR"

// maxRunRequest bounds a run request (its environment is most of it).
const maxRunRequest = 1 << 20

// RunRequest is what `doppel wrap` asks the session to run.
type RunRequest struct {
	Path string   `json:"path"` // absolute: looked up by the wrapper
	Args []string `json:"args"`
	Env  []string `json:"env"`
	Dir  string   `json:"dir"`
}

// run starts the request under the launcher and relays signals and the exit
// code until the command exits or the wrapper goes away.
func (p *PreloadServer) run(c *net.UnixConn, body, oob []byte) error {
	var req RunRequest
	files, err := stdioRights(oob)
	if err == nil {
		defer func() {
			for _, f := range files {
				f.Close()
			}
		}()
		err = json.Unmarshal(body, &req)
	}
	if err == nil && (req.Path == "" || len(req.Args) == 0) {
		err = errors.New("empty command")
	}
	if err != nil {
		c.Write([]byte("E" + fmt.Sprintf("bad run request: %v", err)))
		return err
	}
	tree, err := launcher.Start(p.sup.ctx, launcher.Spec{Filter: p.sup.opts.Filter}, launcher.Command{
		Path: req.Path, Args: req.Args, Env: req.Env, Dir: req.Dir,
		Stdin: files[0], Stdout: files[1], Stderr: files[2],
	}, p.sup.Serve)
	if err != nil {
		c.Write([]byte("E" + err.Error()))
		return nil // the wrapper reports it
	}
	p.sup.log.Info("wrap: command started", "pid", tree.Pid, "path", req.Path)
	c.Write([]byte("P" + strconv.Itoa(tree.Pid)))
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := c.Read(buf)
			if err != nil {
				// The wrapper is gone (killed, or the IDE stopped it).
				select {
				case <-tree.Exited():
				default:
					tree.Signal(syscall.SIGKILL)
				}
				return
			}
			if n > 1 && buf[0] == 'S' {
				if sig, err := strconv.Atoi(string(buf[1:n])); err == nil && sig > 0 && sig < 65 {
					tree.Signal(syscall.Signal(sig))
				}
			}
		}
	}()
	code := tree.Wait()
	_, err = c.Write([]byte("X" + strconv.Itoa(code)))
	return err
}

// stdioRights are the three descriptors of a run request.
func stdioRights(oob []byte) ([]*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("no stdio descriptors (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil {
		return nil, err
	}
	if len(fds) != 3 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("%d stdio descriptors, want 3", len(fds))
	}
	files := make([]*os.File, 3)
	for i, fd := range fds {
		unix.CloseOnExec(fd)
		files[i] = os.NewFile(uintptr(fd), "stdio")
	}
	return files, nil
}

// Wrap asks the session listening on socket to run req with this process's
// stdin, stdout and stderr, relays the signals sent on sigs to it, and
// returns its exit code. started, if not nil, gets the command's pid.
func Wrap(socket string, req RunRequest, sigs <-chan os.Signal, started func(pid int)) (int, error) {
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: socket, Net: "unixpacket"})
	if err != nil {
		return 0, fmt.Errorf("connect to the doppel session at %s: %w", socket, err)
	}
	defer c.Close()
	body, err := json.Marshal(req)
	if err != nil {
		return 0, err
	}
	if len(runMagic)+len(body) > maxRunRequest {
		return 0, fmt.Errorf("the command and its environment take %d bytes, more than %d", len(body), maxRunRequest)
	}
	rights := unix.UnixRights(0, 1, 2)
	if _, _, err := c.WriteMsgUnix(append([]byte(runMagic), body...), rights, nil); err != nil {
		return 0, fmt.Errorf("send the command to the doppel session: %w", err)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		return 0, fmt.Errorf("the doppel session did not answer: %w", err)
	}
	switch {
	case n > 1 && buf[0] == 'E':
		return 0, fmt.Errorf("the doppel session could not start %s: %s", req.Path, buf[1:n])
	case n > 1 && buf[0] == 'P':
		if started != nil {
			pid, _ := strconv.Atoi(string(buf[1:n]))
			started(pid)
		}
	default:
		return 0, fmt.Errorf("unexpected answer %q from the doppel session", buf[:n])
	}
	exited := make(chan struct{})
	defer close(exited)
	go func() {
		for {
			select {
			case <-exited:
				return
			case sig := <-sigs:
				if s, ok := sig.(syscall.Signal); ok {
					c.Write([]byte("S" + strconv.Itoa(int(s))))
				}
			}
		}
	}()
	n, err = c.Read(buf)
	if err != nil {
		return 0, fmt.Errorf("the doppel session ended before the command: %w", err)
	}
	if n < 2 || buf[0] != 'X' {
		return 0, fmt.Errorf("unexpected answer %q from the doppel session", buf[:n])
	}
	return strconv.Atoi(string(buf[1:n]))
}
