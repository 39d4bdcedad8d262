package layer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/doppel-dev/doppel/layer/seccomp"
)

// EnvSocket names the preload server's socket for libdoppel.so.
const EnvSocket = "DOPPEL_LAYER_SOCKET"

// PreloadServer hands the filter to processes that load libdoppel.so
// (LD_PRELOAD) and gives their listeners to a Supervisor; it also runs
// commands under the launcher for `doppel wrap` (wrap_linux.go). The shim
// installs first: a process under an ancestor's listener gets EBUSY and
// never calls.
type PreloadServer struct {
	sup  *Supervisor
	ln   *net.UnixListener
	path string
	wg   sync.WaitGroup
}

// ListenPreload listens on the unix socket path (SOCK_SEQPACKET) for shims.
func ListenPreload(sup *Supervisor, path string) (*PreloadServer, error) {
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, err
	}
	os.Chmod(path, 0o600)
	return &PreloadServer{sup: sup, ln: ln, path: path}, nil
}

// Env returns the environment a process needs to be intercepted: the
// socket, and LD_PRELOAD with shim (the path of libdoppel.so) prepended to
// preload, the value it had.
func (p *PreloadServer) Env(shim, preload string) []string {
	if preload != "" {
		shim += ":" + preload
	}
	return []string{EnvSocket + "=" + p.path, "LD_PRELOAD=" + shim}
}

// Serve accepts shims until Close; each handshake runs on its own goroutine.
func (p *PreloadServer) Serve() error {
	for {
		c, err := p.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer c.Close()
			if err := p.handshake(c); err != nil {
				p.sup.log.Error("preload handshake", "err", err)
			}
		}()
	}
}

// Close stops accepting and removes the socket.
func (p *PreloadServer) Close() error {
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

const preloadMagic = "DOPPEL1"

func (p *PreloadServer) handshake(c *net.UnixConn) error {
	ctx, cancel := context.WithTimeout(p.sup.ctx, 30*time.Second)
	defer cancel()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()

	hello := make([]byte, maxRunRequest)
	oob := make([]byte, unix.CmsgSpace(3*4))
	n, oobn, _, _, err := c.ReadMsgUnix(hello, oob)
	if err != nil {
		return err
	}
	if bytes.HasPrefix(hello[:n], []byte(runMagic)) {
		// The connection lasts as long as the command.
		stop()
		c.SetDeadline(time.Time{})
		return p.run(c, hello[len(runMagic):n], oob[:oobn])
	}
	if n != len(preloadMagic)+12 || !bytes.HasPrefix(hello, []byte(preloadMagic)) {
		return fmt.Errorf("bad hello %q", hello[:n])
	}
	o := p.sup.opts.Filter
	o.Exempt = &seccomp.SendmsgExemption{
		FD:  int(binary.LittleEndian.Uint32(hello[7:])),
		Msg: binary.LittleEndian.Uint64(hello[11:]),
	}
	prog, err := seccomp.Build(o)
	if err != nil {
		return err
	}
	if _, err := c.Write(prog.Marshal()); err != nil {
		return err
	}
	buf := make([]byte, 256)
	n, oobn, _, _, err = c.ReadMsgUnix(buf, oob)
	if err != nil {
		return err
	}
	if n > 0 && buf[0] == 'E' {
		return fmt.Errorf("shim: %s", buf[1:n])
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return fmt.Errorf("no listener from shim (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return fmt.Errorf("bad rights from shim (%v)", err)
	}
	unix.CloseOnExec(fds[0])
	if err := p.sup.Serve(os.NewFile(uintptr(fds[0]), "seccomp-listener")); err != nil {
		return err
	}
	_, err = c.Write([]byte{1})
	return err
}
