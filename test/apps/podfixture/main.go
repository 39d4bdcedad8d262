//go:build linux

// Command podfixture is the process of a test "pod": started inside a network
// namespace, a UTS namespace and a private mount namespace (see package
// test/integration/podns, which sets all of that up), it makes the pod's
// world and serves it until its stdin closes:
//
//   - its own hostname;
//   - its own root file system (a tmpfs it chroots into, mounted in its
//     mount namespace only): /etc/resolv.conf pointing at the pod's DNS
//     server with the cluster search list, /etc/hosts with a pod-only entry,
//     /etc/hostname, /etc/podinfo/ with a few files, /app/config.yaml;
//   - on its address: a TCP greeting server, a UDP echo server, an HTTP
//     server, and a DNS server (UDP and TCP) that knows one name.
//
// It prints "ready PID" on stdout once everything serves.
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/net/dns/dnsmessage"
)

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "", "the pod's IPv4 address")
	flag.StringVar(&o.hostname, "hostname", "pod-under-test", "the pod's hostname")
	flag.StringVar(&o.scratch, "scratch", "", "an empty directory: the pod's root (a tmpfs mounted on it in the pod only)")
	flag.StringVar(&o.domain, "domain", "test.svc.cluster.local", "the pod's namespace domain")
	flag.StringVar(&o.name, "name", "only-in-pod", "the one name the pod's DNS knows (in -domain)")
	flag.StringVar(&o.hostsName, "hosts-name", "pod-hosts-only", "a name only the pod's /etc/hosts has")
	flag.StringVar(&o.message, "message", "", "content of /etc/podinfo/message")
	flag.IntVar(&o.tcpPort, "tcp", 7001, "TCP greeting port")
	flag.IntVar(&o.udpPort, "udp", 7002, "UDP echo port")
	flag.IntVar(&o.httpPort, "http", 7080, "HTTP port")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "podfixture:", err)
		os.Exit(1)
	}
}

type options struct {
	addr, hostname, scratch, domain, name, hostsName, message string
	tcpPort, udpPort, httpPort                                int
}

func run(o options) error {
	ip := net.ParseIP(o.addr).To4()
	if ip == nil {
		return fmt.Errorf("-addr %q is no IPv4 address", o.addr)
	}
	if o.scratch == "" {
		return fmt.Errorf("-scratch is required")
	}
	if err := syscall.Sethostname([]byte(o.hostname)); err != nil {
		return fmt.Errorf("sethostname: %w", err)
	}
	if err := makeRoot(o); err != nil {
		return err
	}

	tcp, err := net.Listen("tcp4", net.JoinHostPort(o.addr, strconv.Itoa(o.tcpPort)))
	if err != nil {
		return err
	}
	go serveGreeting(tcp, o.hostname)
	udp, err := net.ListenPacket("udp4", net.JoinHostPort(o.addr, strconv.Itoa(o.udpPort)))
	if err != nil {
		return err
	}
	go serveUDPEcho(udp)
	web, err := net.Listen("tcp4", net.JoinHostPort(o.addr, strconv.Itoa(o.httpPort)))
	if err != nil {
		return err
	}
	go http.Serve(web, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pod-http host=%s path=%s peer=%s\n", o.hostname, r.URL.Path, r.RemoteAddr)
	}))
	dnsUDP, err := net.ListenPacket("udp4", net.JoinHostPort(o.addr, "53"))
	if err != nil {
		return err
	}
	dnsTCP, err := net.Listen("tcp4", net.JoinHostPort(o.addr, "53"))
	if err != nil {
		return err
	}
	zone := zone{name: o.name + "." + o.domain + ".", ip: [4]byte(ip)}
	go zone.serveUDP(dnsUDP)
	go zone.serveTCP(dnsTCP)

	fmt.Printf("ready %d\n", os.Getpid())
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// makeRoot gives the pod a root file system of its own, as a container has:
// a tmpfs mounted on the scratch directory in this mount namespace only
// (the caller made it private), with the pod's /etc, then chroot into it.
// The host's files are not the pod's: a path the layer wrongly sends to
// the pod is not found there.
func makeRoot(o options) error {
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making the mounts private: %w", err)
	}
	if err := syscall.Mount("tmpfs", o.scratch, "tmpfs", 0, "size=4m,mode=0755"); err != nil {
		return fmt.Errorf("tmpfs on %s: %w", o.scratch, err)
	}
	hosts := fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n%s\t%s\n%s\t%s\n",
		o.addr, o.hostname, o.addr, o.hostsName)
	files := map[string]string{
		"etc/resolv.conf": fmt.Sprintf("search %s svc.cluster.local cluster.local\nnameserver %s\noptions ndots:5 timeout:2 attempts:2\n",
			o.domain, o.addr),
		"etc/hosts":               hosts,
		"etc/hostname":            o.hostname + "\n",
		"etc/nsswitch.conf":       "hosts: files dns\n",
		"etc/passwd":              "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":               "root:x:0:\n",
		"etc/podinfo/message":     o.message,
		"etc/podinfo/labels":      "app=podfixture\n",
		"etc/podinfo/annotations": "doppel.dev/test=true\n",
		"app/config.yaml":         "mode: pod\n",
	}
	for rel, content := range files {
		path := filepath.Join(o.scratch, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return err
		}
	}
	for _, dir := range []string{"etc/podinfo/config.d", "tmp", "root"} {
		if err := os.MkdirAll(filepath.Join(o.scratch, dir), 0o755); err != nil {
			return err
		}
	}
	if err := syscall.Chroot(o.scratch); err != nil {
		return fmt.Errorf("chroot %s: %w", o.scratch, err)
	}
	return os.Chdir("/")
}

// serveGreeting greets every connection with a line naming the pod and the
// peer it sees: a connection made inside the pod comes from the pod's own
// address, one from the host from the host's end of the veth.
func serveGreeting(l net.Listener, hostname string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			fmt.Fprintf(c, "hello from %s to %s\n", hostname, c.RemoteAddr())
			// Then echo one line, so clients can check both directions.
			line, err := bufio.NewReader(c).ReadString('\n')
			if err == nil {
				fmt.Fprintf(c, "echo:%s", line)
			}
		}()
	}
}

func serveUDPEcho(pc net.PacketConn) {
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo(append([]byte("echo:"), buf[:n]...), from)
	}
}

// zone is the pod's DNS: one name with one A record, NXDOMAIN for the rest.
type zone struct {
	name string // fully qualified, with the final dot
	ip   [4]byte
}

func (z zone) serveUDP(pc net.PacketConn) {
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if out := z.answer(buf[:n]); out != nil {
			pc.WriteTo(out, from)
		}
	}
}

func (z zone) serveTCP(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			for {
				var hdr [2]byte
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(hdr[:]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				out := z.answer(q)
				if out == nil {
					return
				}
				if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(out))), out...)); err != nil {
					return
				}
			}
		}()
	}
}

func (z zone) answer(query []byte) []byte {
	var q dnsmessage.Message
	if err := q.Unpack(query); err != nil || len(q.Questions) != 1 {
		return nil
	}
	question := q.Questions[0]
	a := dnsmessage.Message{
		Header: dnsmessage.Header{ID: q.Header.ID, Response: true, Authoritative: true,
			RecursionDesired: q.Header.RecursionDesired, RecursionAvailable: true},
		Questions: q.Questions,
	}
	switch {
	case !strings.EqualFold(question.Name.String(), z.name):
		a.Header.RCode = dnsmessage.RCodeNameError
	case question.Type == dnsmessage.TypeA:
		a.Answers = append(a.Answers, dnsmessage.Resource{
			Header: dnsmessage.ResourceHeader{Name: question.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 5},
			Body:   &dnsmessage.AResource{A: z.ip},
		})
	default:
		// Other types of the name that exists: no data.
	}
	out, err := a.Pack()
	if err != nil {
		return nil
	}
	return out
}
