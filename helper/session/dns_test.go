package session

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// fakeZone answers A queries from a map and NXDOMAIN otherwise, as a pod's
// resolver would.
func fakeZone(zone map[string]string) exchangeFunc {
	return func(_ context.Context, query []byte) ([]byte, error) {
		var p dnsmessage.Parser
		hdr, err := p.Start(query)
		if err != nil {
			return nil, err
		}
		q, err := p.Question()
		if err != nil {
			return nil, err
		}
		hdr.Response = true
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
