package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

func TestParseResolvConf(t *testing.T) {
	cfg := ParseResolvConf([]byte(`# kubelet
search staging.svc.cluster.local svc.cluster.local cluster.local
nameserver 10.96.0.10 ; trailing comment
nameserver fd00::a
nameserver not-an-ip
nameserver 10.0.0.3
nameserver 10.0.0.4
options ndots:5 timeout:2 attempts:3 use-vc
`))
	want := []string{"10.96.0.10:53", "[fd00::a]:53", "10.0.0.3:53"}
	if len(cfg.Nameservers) != len(want) {
		t.Fatalf("nameservers %v", cfg.Nameservers)
	}
	for i, w := range want {
		if cfg.Nameservers[i].String() != w {
			t.Errorf("nameserver %d = %v, want %s", i, cfg.Nameservers[i], w)
		}
	}
	if cfg.Timeout != 2*time.Second || cfg.Attempts != 3 || !cfg.UseTCP {
		t.Errorf("options %+v", cfg)
	}
	empty := ParseResolvConf(nil)
	if len(empty.Nameservers) != 1 || empty.Nameservers[0].String() != "127.0.0.1:53" ||
		empty.Timeout != defaultTimeout || empty.Attempts != defaultAttempts || empty.UseTCP {
		t.Errorf("defaults %+v", empty)
	}
}

// fakeServer is a DNS server on loopback standing in for a pod nameserver.
type fakeServer struct {
	udp     net.PacketConn
	tcp     net.Listener
	answer  func(q dnsmessage.Message, overTCP bool) *dnsmessage.Message // nil: stay silent
	udpHits atomic.Int32
	tcpHits atomic.Int32
}

func startFake(t *testing.T, answer func(q dnsmessage.Message, overTCP bool) *dnsmessage.Message) *fakeServer {
	t.Helper()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Listen("tcp", udp.LocalAddr().String())
	if err != nil {
		// The same port is taken for TCP: take any other.
		tcp, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
	}
	s := &fakeServer{udp: udp, tcp: tcp, answer: answer}
	t.Cleanup(func() { udp.Close(); tcp.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := udp.ReadFrom(buf)
			if err != nil {
				return
			}
			s.udpHits.Add(1)
			if out := s.reply(buf[:n], false); out != nil {
				udp.WriteTo(out, from)
			}
		}
	}()
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			s.tcpHits.Add(1)
			go func() {
				defer c.Close()
				var hdr [2]byte
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(hdr[:]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				if out := s.reply(q, true); out != nil {
					c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(out))), out...))
				}
			}()
		}
	}()
	return s
}

func (s *fakeServer) reply(q []byte, overTCP bool) []byte {
	var m dnsmessage.Message
	if err := m.Unpack(q); err != nil {
		return nil
	}
	a := s.answer(m, overTCP)
	if a == nil {
		return nil
	}
	a.Header.ID = m.Header.ID
	a.Header.Response = true
	a.Questions = m.Questions
	out, err := a.Pack()
	if err != nil {
		panic(err)
	}
	return out
}

// resolverFor points a Resolver at fake servers: resolv.conf lists
// 127.0.0.N (port 53, as always) and Dial maps each to its fake's port.
func resolverFor(t *testing.T, options string, servers ...*fakeServer) *Resolver {
	conf := "options timeout:1 attempts:1 " + options + "\n"
	route := map[string][2]string{}
	for i, s := range servers {
		ns := netip.AddrFrom4([4]byte{127, 0, 0, byte(10 + i)})
		conf += "nameserver " + ns.String() + "\n"
		route[netip.AddrPortFrom(ns, 53).String()] = [2]string{s.udp.LocalAddr().String(), s.tcp.Addr().String()}
	}
	return &Resolver{
		ResolvConf: func() ([]byte, error) { return []byte(conf), nil },
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			r, ok := route[address]
			if !ok {
				t.Errorf("dial to %s, not a configured nameserver", address)
				return nil, syscall.ENETUNREACH
			}
			target := r[0]
			if network == "tcp" {
				target = r[1]
			}
			var d net.Dialer
			return d.DialContext(ctx, network, target)
		},
	}
}

func query(t *testing.T, name string, typ dnsmessage.Type) []byte {
	t.Helper()
	m := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: 0x4242, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}},
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func aRecord(name string, ip [4]byte) dnsmessage.Resource {
	return dnsmessage.Resource{
		Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 30},
		Body:   &dnsmessage.AResource{A: ip},
	}
}

// podZone answers one name; NXDOMAIN otherwise; "big." needs TCP.
func podZone(q dnsmessage.Message, overTCP bool) *dnsmessage.Message {
	name := q.Questions[0].Name.String()
	switch name {
	case "only-in-pod.test.svc.cluster.local.":
		return &dnsmessage.Message{Answers: []dnsmessage.Resource{aRecord(name, [4]byte{10, 77, 0, 2})}}
	case "big.test.svc.cluster.local.":
		if !overTCP {
			return &dnsmessage.Message{Header: dnsmessage.Header{Truncated: true}}
		}
		m := &dnsmessage.Message{}
		for i := range 100 {
			m.Answers = append(m.Answers, aRecord(name, [4]byte{10, 77, 1, byte(i)}))
		}
		return m
	}
	return &dnsmessage.Message{Header: dnsmessage.Header{RCode: dnsmessage.RCodeNameError}}
}

func unpack(t *testing.T, b []byte) dnsmessage.Message {
	t.Helper()
	var m dnsmessage.Message
	if err := m.Unpack(b); err != nil {
		t.Fatalf("answer does not parse: %v", err)
	}
	return m
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestExchange(t *testing.T) {
	s := startFake(t, podZone)
	r := resolverFor(t, "", s)

	ans, err := r.Exchange(ctxFor(t), query(t, "only-in-pod.test.svc.cluster.local.", dnsmessage.TypeA))
	if err != nil {
		t.Fatal(err)
	}
	m := unpack(t, ans)
	if m.Header.ID != 0x4242 || m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 1 ||
		m.Answers[0].Body.(*dnsmessage.AResource).A != [4]byte{10, 77, 0, 2} {
		t.Errorf("answer %+v", m)
	}

	ans, err = r.Exchange(ctxFor(t), query(t, "elsewhere.example.", dnsmessage.TypeA))
	if err != nil {
		t.Fatal(err)
	}
	if m := unpack(t, ans); m.RCode != dnsmessage.RCodeNameError {
		t.Errorf("NXDOMAIN became %v", m.RCode)
	}

	ans, err = r.Exchange(ctxFor(t), query(t, "big.test.svc.cluster.local.", dnsmessage.TypeA))
	if err != nil {
		t.Fatal(err)
	}
	if m := unpack(t, ans); m.Truncated || len(m.Answers) != 100 {
		t.Errorf("truncated answer not retried over TCP: tc=%v answers=%d", m.Truncated, len(m.Answers))
	}
	if s.tcpHits.Load() != 1 {
		t.Errorf("%d TCP exchanges, want 1", s.tcpHits.Load())
	}
}

// A truncated answer whose TCP retry fails is returned as it is (TC set),
// not turned into an error.
func TestExchangeKeepsTruncatedWhenTCPFails(t *testing.T) {
	s := startFake(t, podZone)
	s.tcp.Close() // the server answers UDP only
	r := resolverFor(t, "", s)
	ans, err := r.Exchange(ctxFor(t), query(t, "big.test.svc.cluster.local.", dnsmessage.TypeA))
	if err != nil {
		t.Fatalf("a truncated answer became %v", err)
	}
	if m := unpack(t, ans); !m.Truncated {
		t.Errorf("answer %+v, want the truncated one", m.Header)
	}
}

func TestExchangeUseVC(t *testing.T) {
	s := startFake(t, podZone)
	r := resolverFor(t, "use-vc", s)
	if _, err := r.Exchange(ctxFor(t), query(t, "only-in-pod.test.svc.cluster.local.", dnsmessage.TypeA)); err != nil {
		t.Fatal(err)
	}
	if s.udpHits.Load() != 0 || s.tcpHits.Load() != 1 {
		t.Errorf("udp %d tcp %d", s.udpHits.Load(), s.tcpHits.Load())
	}
}

func TestExchangeFailover(t *testing.T) {
	servfail := startFake(t, func(dnsmessage.Message, bool) *dnsmessage.Message {
		return &dnsmessage.Message{Header: dnsmessage.Header{RCode: dnsmessage.RCodeServerFailure}}
	})
	silent := startFake(t, func(dnsmessage.Message, bool) *dnsmessage.Message { return nil })
	good := startFake(t, podZone)

	r := resolverFor(t, "", servfail, silent, good)
	ans, err := r.Exchange(ctxFor(t), query(t, "only-in-pod.test.svc.cluster.local.", dnsmessage.TypeA))
	if err != nil {
		t.Fatal(err)
	}
	if m := unpack(t, ans); m.RCode != dnsmessage.RCodeSuccess {
		t.Errorf("rcode %v", m.RCode)
	}

	// Only SERVFAIL: that answer comes back rather than an error.
	r = resolverFor(t, "", servfail)
	ans, err = r.Exchange(ctxFor(t), query(t, "x.", dnsmessage.TypeA))
	if err != nil || unpack(t, ans).RCode != dnsmessage.RCodeServerFailure {
		t.Errorf("all SERVFAIL: %v", err)
	}

	// Nobody answers: ETIMEDOUT, after the configured timeout.
	r = resolverFor(t, "", silent)
	start := time.Now()
	_, err = r.Exchange(ctxFor(t), query(t, "x.", dnsmessage.TypeA))
	var qe *QueryError
	if !errors.As(err, &qe) || qe.Errno() != syscall.ETIMEDOUT {
		t.Errorf("silent server: %v", err)
	}
	if took := time.Since(start); took < 900*time.Millisecond || took > 5*time.Second {
		t.Errorf("gave up after %v, want about 1s", took)
	}
}

func TestExchangeSkipsForeignIDs(t *testing.T) {
	// The server first sends an answer with another id (a late answer to an
	// earlier try), then the right one.
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	go func() {
		buf := make([]byte, 512)
		n, from, err := udp.ReadFrom(buf)
		if err != nil {
			return
		}
		wrong := append([]byte(nil), buf[:n]...)
		wrong[0] ^= 0xff
		wrong[2] |= 0x80
		udp.WriteTo(wrong, from)
		right := append([]byte(nil), buf[:n]...)
		right[2] |= 0x80
		udp.WriteTo(right, from)
	}()
	r := &Resolver{
		ResolvConf: func() ([]byte, error) { return []byte("nameserver 127.0.0.1\n"), nil },
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, udp.LocalAddr().String())
		},
	}
	q := query(t, "x.", dnsmessage.TypeA)
	ans, err := r.Exchange(ctxFor(t), q)
	if err != nil || ans[0] != q[0] || ans[1] != q[1] {
		t.Fatalf("answer %x, %v", ans, err)
	}
}

func TestExchangeRejectsBadQueries(t *testing.T) {
	r := &Resolver{ResolvConf: func() ([]byte, error) { return nil, nil }}
	for _, q := range [][]byte{nil, make([]byte, 11), make([]byte, 70000)} {
		if _, err := r.Exchange(ctxFor(t), q); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("%d-byte query: %v", len(q), err)
		}
	}
}

func TestExchangeCancel(t *testing.T) {
	silent := startFake(t, func(dnsmessage.Message, bool) *dnsmessage.Message { return nil })
	r := resolverFor(t, "", silent)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	if _, err := r.Exchange(ctx, query(t, "x.", dnsmessage.TypeA)); err == nil {
		t.Fatal("no error")
	}
	if took := time.Since(start); took > 700*time.Millisecond {
		t.Errorf("cancel took %v", took)
	}
}
