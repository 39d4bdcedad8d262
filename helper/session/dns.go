package session

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// exchangeFunc sends one raw DNS query and returns the raw answer.
type exchangeFunc func(ctx context.Context, query []byte) ([]byte, error)

// dnsResponder answers the local process's DNS queries (UDP and TCP on
// loopback; the layer redirects port 53 here) by resolving them in the pod,
// or locally for names the DNS filter keeps local. It records which names
// each address was resolved from, so outgoing filters can match hostnames.
type dnsResponder struct {
	udp    *net.UDPConn
	tcp    net.Listener
	remote exchangeFunc
	local  exchangeFunc
	// isLocal reports whether a name is resolved locally (DNS filter).
	isLocal func(name string) bool
	names   *nameTable
	log     *slog.Logger
	timeout time.Duration
}

func newDNSResponder(log *slog.Logger, remote, local exchangeFunc, isLocal func(string) bool, names *nameTable) (*dnsResponder, error) {
	udp, tcp, err := listenUDPAndTCP(func() (net.Listener, error) { return net.Listen("tcp4", "127.0.0.1:0") })
	if err != nil {
		return nil, err
	}
	d := &dnsResponder{udp: udp, tcp: tcp, remote: remote, local: local, isLocal: isLocal, names: names, log: log,
		timeout: 10 * time.Second}
	go d.serveUDP()
	go d.serveTCP()
	return d, nil
}

// listenUDPAndTCP listens on one loopback port for both UDP and TCP, so one
// address serves both (use-vc resolvers ask over TCP where the layer sent
// them). The kernel picks the TCP port (listen, from first); UDP on the same
// port may be taken, by chance, by another program: then it tries another
// port, a bounded number of times.
func listenUDPAndTCP(first func() (net.Listener, error)) (*net.UDPConn, net.Listener, error) {
	var lastErr error
	for range 32 {
		tcp, err := first()
		if err != nil {
			return nil, nil, err
		}
		udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: tcp.Addr().(*net.TCPAddr).Port})
		if err == nil {
			return udp, tcp, nil
		}
		tcp.Close()
		lastErr = err
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, nil, fmt.Errorf("DNS responder: no loopback port free for both UDP and TCP: %w", lastErr)
}

// Addr is where the layer sends port-53 traffic (UDP and TCP).
func (d *dnsResponder) Addr() netip.AddrPort { return d.udp.LocalAddr().(*net.UDPAddr).AddrPort() }

func (d *dnsResponder) Close() error {
	return errors.Join(d.udp.Close(), d.tcp.Close())
}

func (d *dnsResponder) serveUDP() {
	buf := make([]byte, 65535)
	for {
		n, from, err := d.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		query := append([]byte(nil), buf[:n]...)
		go func() {
			if answer := d.answer(query); answer != nil {
				d.udp.WriteToUDPAddrPort(fitUDP(query, answer), from)
			}
		}()
	}
}

func (d *dnsResponder) serveTCP() {
	for {
		c, err := d.tcp.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			for {
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				var size [2]byte
				if _, err := io.ReadFull(c, size[:]); err != nil {
					return
				}
				query := make([]byte, binary.BigEndian.Uint16(size[:]))
				if _, err := io.ReadFull(c, query); err != nil {
					return
				}
				answer := d.answer(query)
				if answer == nil {
					return
				}
				out := binary.BigEndian.AppendUint16(nil, uint16(len(answer)))
				if _, err := c.Write(append(out, answer...)); err != nil {
					return
				}
			}
		}()
	}
}

// fitUDP returns answer as a UDP reply to query may carry it: within the
// size the query allows (512 bytes, or its EDNS0 payload size), else with
// its header and question only and the TC bit, so that the client asks
// again over TCP, as it would have of the pod's DNS server. (The agent's
// resolver retries over TCP itself when a UDP answer comes truncated, so an
// answer may be larger than any UDP client asked for.)
func fitUDP(query, answer []byte) []byte {
	limit := 512
	var p dnsmessage.Parser
	if _, err := p.Start(query); err == nil && p.SkipAllQuestions() == nil && p.SkipAllAnswers() == nil && p.SkipAllAuthorities() == nil {
		for {
			h, err := p.AdditionalHeader()
			if err != nil {
				break
			}
			if h.Type == dnsmessage.TypeOPT {
				limit = max(limit, int(h.Class)) // an OPT record's class is its UDP payload size
			}
			if p.SkipAdditional() != nil {
				break
			}
		}
	}
	if len(answer) <= limit {
		return answer
	}
	hdr, err := p.Start(answer)
	if err != nil {
		return answer
	}
	qs, err := p.AllQuestions()
	if err != nil {
		return answer
	}
	hdr.Truncated = true
	b := dnsmessage.NewBuilder(nil, hdr)
	b.StartQuestions()
	for _, q := range qs {
		b.Question(q)
	}
	out, err := b.Finish()
	if err != nil {
		return answer
	}
	return out
}

// answer resolves one query; on failure it answers SERVFAIL so the program
// fails fast instead of retrying into a timeout.
func (d *dnsResponder) answer(query []byte) []byte {
	var p dnsmessage.Parser
	hdr, err := p.Start(query)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	name := strings.TrimSuffix(q.Name.String(), ".")
	exchange := d.remote
	if d.isLocal != nil && d.isLocal(name) {
		exchange = d.local
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	answer, err := exchange(ctx, query)
	if err != nil {
		d.log.Warn("dns: resolving failed", "name", name, "type", q.Type, "err", err)
		return servfail(hdr, q)
	}
	d.names.recordAnswer(answer)
	return answer
}

func servfail(hdr dnsmessage.Header, q dnsmessage.Question) []byte {
	hdr.Response, hdr.RCode = true, dnsmessage.RCodeServerFailure
	b := dnsmessage.NewBuilder(nil, hdr)
	b.StartQuestions()
	b.Question(q)
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// nameTable remembers the names each address was resolved from.
type nameTable struct {
	mu    sync.RWMutex
	names map[netip.Addr][]string
}

func newNameTable() *nameTable { return &nameTable{names: map[netip.Addr][]string{}} }

// Names returns the names addr was resolved from, most recent first.
func (t *nameTable) Names(addr netip.Addr) []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return append([]string(nil), t.names[addr.Unmap()]...)
}

func (t *nameTable) add(addr netip.Addr, names ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	addr = addr.Unmap()
	have := t.names[addr]
	for _, n := range names {
		n = strings.TrimSuffix(strings.ToLower(n), ".")
		dup := false
		for _, h := range have {
			dup = dup || h == n
		}
		if !dup {
			have = append([]string{n}, have...)
		}
	}
	if len(have) > 8 {
		have = have[:8]
	}
	t.names[addr] = have
}

// recordAnswer notes the A/AAAA records of an answer under the queried name
// and every CNAME on the way.
func (t *nameTable) recordAnswer(answer []byte) {
	var p dnsmessage.Parser
	if _, err := p.Start(answer); err != nil {
		return
	}
	q, err := p.Question()
	if err != nil {
		return
	}
	p.SkipAllQuestions()
	names := []string{q.Name.String()}
	for {
		h, err := p.AnswerHeader()
		if err != nil {
			return
		}
		switch h.Type {
		case dnsmessage.TypeA:
			r, err := p.AResource()
			if err != nil {
				return
			}
			t.add(netip.AddrFrom4(r.A), append(names, h.Name.String())...)
		case dnsmessage.TypeAAAA:
			r, err := p.AAAAResource()
			if err != nil {
				return
			}
			t.add(netip.AddrFrom16(r.AAAA), append(names, h.Name.String())...)
		case dnsmessage.TypeCNAME:
			r, err := p.CNAMEResource()
			if err != nil {
				return
			}
			names = append(names, h.Name.String(), r.CNAME.String())
		default:
			if err := p.SkipAnswer(); err != nil {
				return
			}
		}
	}
}
