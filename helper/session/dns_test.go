package session

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// fakeZone answers A queries from a map and NXDOMAIN otherwise, as a pod's
// resolver would.
func fakeZone(zone map[string]string) exchangeFunc {
	return func(_ context.Context, query []byte) ([]byte, error) {
		hdr, q, err := reply(query)
		if err != nil {
			return nil, err
		}
		ip, ok := zone[strings.TrimSuffix(q.Name.String(), ".")]
		if !ok {
			hdr.RCode = dnsmessage.RCodeNameError
		}
		b := dnsmessage.NewBuilder(nil, hdr)
		b.StartQuestions()
		b.Question(q)
		if ok && q.Type == dnsmessage.TypeA {
			b.StartAnswers()
			b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 5},
				dnsmessage.AResource{A: netip.MustParseAddr(ip).As4()})
		}
		return b.Finish()
	}
}

// reply is the header of the answer to query, and its question.
func reply(query []byte) (dnsmessage.Header, dnsmessage.Question, error) {
	var p dnsmessage.Parser
	hdr, err := p.Start(query)
	if err != nil {
		return hdr, dnsmessage.Question{}, err
	}
	q, err := p.Question()
	hdr.Response = true
	return hdr, q, err
}

func resolverFor(addr netip.AddrPort, network string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr.String())
	}}
}

func TestDNSResponderResolvesRemotelyAndRecordsNames(t *testing.T) {
	names := newNameTable()
	remote := fakeZone(map[string]string{"backend.staging.svc.cluster.local": "10.96.0.42"})
	local := fakeZone(map[string]string{"build.internal": "10.1.1.1"})
	d, err := newDNSResponder(slog.New(slog.DiscardHandler), remote, local,
		func(name string) bool { return strings.HasSuffix(name, ".internal") }, names)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	for _, network := range []string{"udp", "tcp"} {
		r := resolverFor(d.Addr(), network)
		ips, err := r.LookupHost(context.Background(), "backend.staging.svc.cluster.local")
		if err != nil || len(ips) != 1 || ips[0] != "10.96.0.42" {
			t.Fatalf("%s: remote name: %v %v", network, ips, err)
		}
		ips, err = r.LookupHost(context.Background(), "build.internal")
		if err != nil || len(ips) != 1 || ips[0] != "10.1.1.1" {
			t.Fatalf("%s: local name: %v %v", network, ips, err)
		}
		_, err = r.LookupHost(context.Background(), "nowhere.example")
		var dnsErr *net.DNSError
		if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
			t.Fatalf("%s: NXDOMAIN did not stay NXDOMAIN: %v", network, err)
		}
	}
	got := names.Names(netip.MustParseAddr("10.96.0.42"))
	if len(got) == 0 || got[0] != "backend.staging.svc.cluster.local" {
		t.Fatalf("names of 10.96.0.42: %v", got)
	}
}

func TestDNSResponderServfailsWhenThePodCannotAnswer(t *testing.T) {
	d, err := newDNSResponder(slog.New(slog.DiscardHandler),
		func(context.Context, []byte) ([]byte, error) { return nil, errors.New("agent gone") }, nil, nil, newNameTable())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, err = resolverFor(d.Addr(), "udp").LookupHost(context.Background(), "x.svc.cluster.local")
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || dnsErr.IsNotFound {
		t.Fatalf("want a server failure, got %v", err)
	}
}

// The responder's TCP port may be taken for UDP by someone else: it moves
// to a port free for both.
func TestListenUDPAndTCPAvoidsATakenUDPPort(t *testing.T) {
	taken, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.LocalAddr().(*net.UDPAddr).Port
	calls, forced := 0, false
	udp, tcp, err := listenUDPAndTCP(func() (net.Listener, error) {
		calls++
		if calls == 1 {
			// The first TCP port is the one whose UDP twin is taken (unless
			// TCP has it too, by chance).
			l, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(takenPort)))
			if err == nil {
				forced = true
				return l, nil
			}
		}
		return net.Listen("tcp4", "127.0.0.1:0")
	})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	defer tcp.Close()
	up, tp := udp.LocalAddr().(*net.UDPAddr).Port, tcp.Addr().(*net.TCPAddr).Port
	if up != tp || up == takenPort || (forced && calls < 2) {
		t.Errorf("udp %d, tcp %d, taken %d, %d tries", up, tp, takenPort, calls)
	}
}

// An answer larger than a UDP query allows (the agent's resolver fetched it
// over TCP: a headless Service with many pods) goes back truncated, TC set,
// and the client gets it whole over TCP, as it would in the pod.
func TestDNSResponderTruncatesForUDP(t *testing.T) {
	many := func(_ context.Context, query []byte) ([]byte, error) {
		hdr, q, err := reply(query)
		if err != nil {
			return nil, err
		}
		b := dnsmessage.NewBuilder(nil, hdr)
		b.StartQuestions()
		b.Question(q)
		b.StartAnswers()
		for i := range 200 {
			if q.Type == dnsmessage.TypeA {
				b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 5},
					dnsmessage.AResource{A: [4]byte{10, 244, byte(i / 250), byte(1 + i%250)}})
			}
		}
		return b.Finish()
	}
	d, err := newDNSResponder(slog.New(slog.DiscardHandler), many, nil, nil, newNameTable())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var networks []string
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		networks = append(networks, network)
		var dd net.Dialer
		return dd.DialContext(ctx, network, d.Addr().String())
	}}
	ips, err := r.LookupIP(context.Background(), "ip4", "pods.headless.svc.cluster.local")
	if err != nil || len(ips) != 200 {
		t.Fatalf("%d addresses, %v; want 200 (networks asked: %v)", len(ips), err, networks)
	}
	if !slices.Contains(networks, "tcp") {
		t.Errorf("the resolver never asked over TCP: %v", networks)
	}
}
