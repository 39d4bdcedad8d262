// Command goprobe checks, from inside a program run by `doppel exec`, that the
// program sees the pod: it prints one key=value line per check (see
// test/apps/probes/README.md for the keys, shared by every runtime's probe).
//
// Built twice by the integration tests: static (CGO_ENABLED=0, Go's own
// resolver) and with cgo (the libc resolver: -resolver cgo).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"
)

func main() {
	resolver := flag.String("resolver", "go", "go (Go's DNS resolver) or cgo (libc's getaddrinfo)")
	stress := flag.Int("stress", 0, "instead of the checks: this many concurrent resolve+connect+greeting rounds")
	flag.Parse()
	cfg := configFromEnv()
	p := &probe{cfg: cfg, r: &net.Resolver{PreferGo: *resolver == "go"}}
	if *stress > 0 {
		p.stress(*stress)
		return
	}
	emit("runtime", "go")
	emit("go.cgo", fmt.Sprint(cgoEnabled))
	emit("go.resolver", *resolver)
	p.run()
	emit("done", "1")
}

type config struct {
	podIP, shortName, fqdn, unknownName, hostsName string
	tcpPort, udpPort, closedPort                   string
	listenPort, takenPort                          string
}

func configFromEnv() config {
	return config{
		podIP:       os.Getenv("PROBE_POD_IP"),
		shortName:   os.Getenv("PROBE_SHORT_NAME"),
		fqdn:        os.Getenv("PROBE_FQDN"),
		unknownName: os.Getenv("PROBE_UNKNOWN_NAME"),
		hostsName:   os.Getenv("PROBE_HOSTS_NAME"),
		tcpPort:     os.Getenv("PROBE_TCP_PORT"),
		udpPort:     os.Getenv("PROBE_UDP_PORT"),
		closedPort:  os.Getenv("PROBE_CLOSED_PORT"),
		listenPort:  os.Getenv("PROBE_LISTEN_PORT"),
		takenPort:   os.Getenv("PROBE_TAKEN_PORT"),
	}
}

// emit prints one result; newlines in values are escaped so that every
// result stays one line.
func emit(key, value string) {
	value = strings.NewReplacer("\\", "\\\\", "\n", "\\n").Replace(value)
	fmt.Printf("%s=%s\n", key, value)
}

func errValue(err error) string {
	if err == nil {
		return "ok"
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "ECONNREFUSED"
	case errors.Is(err, syscall.ENOENT):
		return "ENOENT"
	}
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return "NXDOMAIN"
	}
	return "error: " + err.Error()
}

type probe struct {
	cfg config
	r   *net.Resolver
}

func (p *probe) run() {
	emit("env.POD_SECRET", os.Getenv("POD_SECRET"))
	if h, err := os.Hostname(); err == nil {
		emit("info.hostname", h)
	}
	if b, err := os.ReadFile("/etc/hostname"); err == nil {
		emit("etc.hostname", strings.TrimSpace(string(b)))
	} else {
		emit("etc.hostname", errValue(err))
	}
	p.dns()
	p.tcp()
	p.udp()
	p.files()
	p.refused()
	p.listen()
}

// resolvConfIsPod guards the DNS checks: if the program does not see the
// pod's resolv.conf, a lookup would go to the host's name servers, which
// the tests must not reach.
func (p *probe) resolvConfIsPod() bool {
	b, err := os.ReadFile("/etc/resolv.conf")
	ok := err == nil && strings.Contains(string(b), "nameserver "+p.cfg.podIP)
	if !ok {
		emit("dns.guard", "resolv.conf is not the pod's: DNS checks skipped")
	}
	return ok
}

func (p *probe) lookup(name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, err := p.r.LookupHost(ctx, name)
	if err != nil {
		return errValue(err)
	}
	var v4 []string
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip != nil && ip.To4() != nil {
			v4 = append(v4, a)
		}
	}
	sort.Strings(v4)
	return strings.Join(v4, ",")
}

func (p *probe) dns() {
	if !p.resolvConfIsPod() {
		return
	}
	emit("dns.short", p.lookup(p.cfg.shortName))
	emit("dns.fqdn", p.lookup(p.cfg.fqdn))
	emit("dns.unknown", p.lookup(p.cfg.unknownName))
	emit("dns.hosts", p.lookup(p.cfg.hostsName))
}

func (p *probe) tcp() {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(p.cfg.podIP, p.cfg.tcpPort), 10*time.Second)
	if err != nil {
		emit("tcp.greeting", errValue(err))
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// Go fills RemoteAddr from getpeername(2) after the connect.
	emit("tcp.peer", c.RemoteAddr().String())
	buf := make([]byte, 0, 256)
	line, err := readLine(c, buf)
	if err != nil {
		emit("tcp.greeting", errValue(err))
		return
	}
	emit("tcp.greeting", line)
	fmt.Fprintf(c, "ping\n")
	line, err = readLine(c, buf)
	if err != nil {
		emit("tcp.echo", errValue(err))
		return
	}
	emit("tcp.echo", line)
}

func readLine(c net.Conn, buf []byte) (string, error) {
	buf = buf[:0]
	one := make([]byte, 1)
	for len(buf) < cap(buf) {
		if _, err := c.Read(one); err != nil {
			return string(buf), err
		}
		if one[0] == '\n' {
			break
		}
		buf = append(buf, one[0])
	}
	return string(buf), nil
}

func (p *probe) udp() {
	dst := net.JoinHostPort(p.cfg.podIP, p.cfg.udpPort)
	c, err := net.Dial("udp", dst)
	if err != nil {
		emit("udp.echo", errValue(err))
	} else {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte("ping-udp"))
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		if err != nil {
			emit("udp.echo", errValue(err))
		} else {
			emit("udp.echo", string(buf[:n]))
		}
		c.Close()
	}
	// An unconnected socket: sendto with an address each time.
	pc, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		emit("udp.unconnected.echo", errValue(err))
		return
	}
	defer pc.Close()
	pc.SetDeadline(time.Now().Add(10 * time.Second))
	ua, _ := net.ResolveUDPAddr("udp", dst)
	if _, err := pc.WriteTo([]byte("ping-unconnected"), ua); err != nil {
		emit("udp.unconnected.echo", errValue(err))
		return
	}
	buf := make([]byte, 512)
	n, from, err := pc.ReadFrom(buf)
	if err != nil {
		emit("udp.unconnected.echo", errValue(err))
		return
	}
	emit("udp.unconnected.echo", string(buf[:n]))
	emit("udp.unconnected.from", from.String())
}

func (p *probe) files() {
	b, err := os.ReadFile("/etc/podinfo/message")
	if err != nil {
		emit("file.message", errValue(err))
	} else {
		emit("file.message", strings.TrimSpace(string(b)))
	}
	entries, err := os.ReadDir("/etc/podinfo")
	if err != nil {
		emit("file.list", errValue(err))
		return
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	emit("file.list", strings.Join(names, ","))
	if fi, err := os.Stat("/etc/podinfo/config.d"); err != nil {
		emit("file.stat_dir", errValue(err))
	} else {
		emit("file.stat_dir", fmt.Sprint(fi.IsDir()))
	}
}

func (p *probe) refused() {
	_, err := net.DialTimeout("tcp", net.JoinHostPort(p.cfg.podIP, p.cfg.closedPort), 10*time.Second)
	emit("tcp.refused", errValue(err))
}

func (p *probe) listen() {
	for _, l := range []struct{ key, port string }{{"listen.port", p.cfg.listenPort}, {"listen.taken_port", p.cfg.takenPort}} {
		if l.port == "" {
			continue
		}
		ln, err := net.Listen("tcp", ":"+l.port)
		if err != nil {
			emit(l.key, errValue(err))
			continue
		}
		defer ln.Close()
		emit(l.key, fmt.Sprint(ln.Addr().(*net.TCPAddr).Port))
	}
}

// stress runs n rounds at once, each resolving the short name, connecting to
// the pod's greeting server and checking the greeting and the peer, and
// prints how many succeeded and the first few failures.
func (p *probe) stress(n int) {
	if !p.resolvConfIsPod() {
		return
	}
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				addrs, err := p.r.LookupHost(ctx, p.cfg.shortName)
				if err != nil {
					return fmt.Errorf("round %d: lookup: %w", i, err)
				}
				var d net.Dialer
				c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(addrs[0], p.cfg.tcpPort))
				if err != nil {
					return fmt.Errorf("round %d: dial: %w", i, err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				if got, want := c.RemoteAddr().String(), net.JoinHostPort(p.cfg.podIP, p.cfg.tcpPort); got != want {
					return fmt.Errorf("round %d: peer %s, want %s", i, got, want)
				}
				line, err := readLine(c, make([]byte, 0, 256))
				if err != nil {
					return fmt.Errorf("round %d: read: %w", i, err)
				}
				if !strings.HasPrefix(line, "hello from ") || !strings.Contains(line, " to "+p.cfg.podIP+":") {
					return fmt.Errorf("round %d: greeting %q", i, line)
				}
				return nil
			}()
		}()
	}
	ok, shown := 0, 0
	for range n {
		if err := <-errs; err != nil {
			if shown < 5 {
				emit("stress.error", err.Error())
				shown++
			}
			continue
		}
		ok++
	}
	emit("stress.ok", fmt.Sprint(ok))
}
