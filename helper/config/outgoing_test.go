package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseAddressFilter(t *testing.T) {
	for _, tc := range []struct {
		in      string
		proto   Protocol
		prefix  string
		name    string
		port    uint16
		wantErr string
	}{
		{in: "tcp://1.2.3.0/24:7777", proto: ProtocolTCP, prefix: "1.2.3.0/24", port: 7777},
		{in: "1.2.3.4/24", prefix: "1.2.3.0/24"},
		{in: "10.0.0.1", prefix: "10.0.0.1/32"},
		{in: "10.0.0.1:5432", prefix: "10.0.0.1/32", port: 5432},
		{in: "[::1]:80", prefix: "::1/128", port: 80},
		{in: "[::1]", prefix: "::1/128"},
		{in: "::1", prefix: "::1/128"},
		{in: "tcp://[2800:3f0:4001:81e::2004]:7777", proto: ProtocolTCP, prefix: "2800:3f0:4001:81e::2004/128", port: 7777},
		{in: "[2001:db8::/32]:443", prefix: "2001:db8::/32", port: 443},
		{in: "[2001:db8::]/32:443", prefix: "2001:db8::/32", port: 443},
		{in: "2001:db8::/32", prefix: "2001:db8::/32"},
		{in: "[::ffff:10.0.0.1]", prefix: "10.0.0.1/32"},
		{in: ":53", port: 53},
		{in: "udp://:53", proto: ProtocolUDP, port: 53},
		{in: "tcp://", proto: ProtocolTCP},
		{in: "UDP://", proto: ProtocolUDP},
		{in: "", port: 0},
		{in: "google.com", name: "google.com"},
		{in: "tcp://google.com:7777", proto: ProtocolTCP, name: "google.com", port: 7777},
		{in: "Postgres.Staging.svc.", name: "postgres.staging.svc"},
		{in: "*.corp.example.com:443", name: "*.corp.example.com", port: 443},
		{in: "localhost:1337", name: "localhost", port: 1337},
		{in: "my_host-1", name: "my_host-1"},
		{in: "meow://", wantErr: `invalid protocol "meow"`},
		{in: "tcp://google.com/24:7777", wantErr: "a subnet needs an IP address"},
		{in: "10.0.0.0/33", wantErr: "prefix length out of range"},
		{in: "10.0.0.0/x", wantErr: `invalid subnet "10.0.0.0/x"`},
		{in: "1.2.3.4:70000", wantErr: `invalid port "70000"`},
		{in: "1.2.3.4:-1", wantErr: `invalid port "-1"`},
		{in: "host:", wantErr: "missing port"},
		{in: "300.1.1.1", wantErr: `invalid IP address "300.1.1.1"`},
		{in: "[::1", wantErr: `missing "]"`},
		{in: "[::1]x", wantErr: `unexpected "x"`},
		{in: "[zz::1]:80", wantErr: `invalid IP address "zz::1"`},
		{in: "[fe80::1%eth0]:80", wantErr: "zones are not supported"},
		{in: "bad host", wantErr: `invalid host name "bad host"`},
		{in: ":7777udp://", wantErr: `invalid protocol ":7777udp"`},
	} {
		f, err := ParseAddressFilter(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		prefix := ""
		if f.Prefix.IsValid() {
			prefix = f.Prefix.String()
		}
		if f.Protocol != tc.proto || prefix != tc.prefix || f.Name != tc.name || f.Port != tc.port {
			t.Errorf("%q: got %v %q %q %d", tc.in, f.Protocol, prefix, f.Name, f.Port)
		}
	}
}

func TestAddressFilterMatch(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		filter    string
		proto     Protocol
		addr      string
		hostnames []string
		want      bool
	}{
		{"10.0.0.0/8", ProtocolTCP, "10.1.2.3:5432", nil, true},
		{"10.0.0.0/8", ProtocolUDP, "10.1.2.3:53", nil, true},
		{"10.0.0.0/8", ProtocolTCP, "11.1.2.3:5432", nil, false},
		{"10.0.0.0/8", ProtocolTCP, "[::ffff:10.1.2.3]:5432", nil, true}, // IPv4-mapped
		{"tcp://10.0.0.0/8:5432", ProtocolUDP, "10.1.2.3:5432", nil, false},
		{"tcp://10.0.0.0/8:5432", ProtocolTCP, "10.1.2.3:5433", nil, false},
		{"[::1]:80", ProtocolTCP, "[::1]:80", nil, true},
		{"[::1]:80", ProtocolTCP, "[::1]:81", nil, false},
		{"[::1]:80", ProtocolTCP, "127.0.0.1:80", nil, false},
		{"2001:db8::/32", ProtocolTCP, "[2001:db8:1::5]:443", nil, true},
		{"2001:db8::/32", ProtocolTCP, "[2001:db9::5]:443", nil, false},
		{":53", ProtocolUDP, "8.8.8.8:53", nil, true},
		{":53", ProtocolTCP, "[2001:4860:4860::8888]:53", nil, true},
		{":53", ProtocolUDP, "8.8.8.8:54", nil, false},
		{"udp://:53", ProtocolTCP, "8.8.8.8:53", nil, false},
		{"0.0.0.0:8080", ProtocolTCP, "1.2.3.4:8080", nil, true}, // unspecified IP: any address
		{"tcp://", ProtocolTCP, "1.2.3.4:1", nil, true},
		{"db.internal", ProtocolTCP, "10.9.9.9:5432", []string{"db.internal"}, true},
		{"db.internal", ProtocolTCP, "10.9.9.9:5432", []string{"DB.Internal."}, true},
		{"db.internal", ProtocolTCP, "10.9.9.9:5432", nil, false},
		{"example.com", ProtocolTCP, "1.1.1.1:443", []string{"api.example.com"}, true}, // subdomain
		{"example.com", ProtocolTCP, "1.1.1.1:443", []string{"badexample.com"}, false},
		{"postgres", ProtocolTCP, "10.0.0.5:5432", []string{"postgres.staging.svc.cluster.local"}, true}, // search domain
		{"postgres:5432", ProtocolTCP, "10.0.0.5:5433", []string{"postgres"}, false},
		{"*.corp.example.com", ProtocolTCP, "1.1.1.1:443", []string{"git.corp.example.com"}, true},
		{"*.corp.example.com", ProtocolTCP, "1.1.1.1:443", []string{"corp.example.com"}, false},
		{"db-?.internal", ProtocolTCP, "1.1.1.1:443", []string{"x", "db-2.internal"}, true},
		{"localhost:1337", ProtocolTCP, "127.0.0.1:1337", nil, true},
		{"localhost", ProtocolTCP, "[::1]:1337", nil, true},
		{"localhost", ProtocolTCP, "10.0.0.1:1337", nil, false},
	} {
		f, err := ParseAddressFilter(tc.filter)
		if err != nil {
			t.Fatalf("%q: %v", tc.filter, err)
		}
		if got := f.Match(tc.proto, ap(tc.addr), tc.hostnames); got != tc.want {
			t.Errorf("%q.Match(%v, %s, %q) = %v", tc.filter, tc.proto, tc.addr, tc.hostnames, got)
		}
	}
}

func TestOutgoingRoute(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		config    string
		proto     Protocol
		dst       string
		hostnames []string
		want      Route
	}{
		// Defaults: loopback stays local, everything else goes through the pod.
		{"{}", ProtocolTCP, "127.0.0.1:5432", nil, RouteLocal},
		{"{}", ProtocolTCP, "127.0.0.53:53", nil, RouteLocal},
		{"{}", ProtocolTCP, "[::1]:80", nil, RouteLocal},
		{"{}", ProtocolTCP, "[::ffff:127.0.0.1]:80", nil, RouteLocal},
		{"{}", ProtocolTCP, "0.0.0.0:8080", nil, RouteLocal},
		{"{}", ProtocolTCP, "10.96.0.1:443", nil, RouteRemote},
		{"{}", ProtocolUDP, "10.0.0.9:9999", nil, RouteRemote},
		{"{}", ProtocolTCP, "[2001:db8::1]:80", nil, RouteRemote},
		// mirrord's ignore_localhost: false sends loopback to the pod.
		{"{ignore_localhost: false}", ProtocolTCP, "127.0.0.1:15000", nil, RouteRemote},
		// tcp/udp off.
		{"{tcp: false}", ProtocolTCP, "10.0.0.1:80", nil, RouteLocal},
		{"{tcp: false}", ProtocolUDP, "10.0.0.1:80", nil, RouteRemote},
		{"false", ProtocolUDP, "10.0.0.1:80", nil, RouteLocal},
		// A local filter: matches are local, the rest remote.
		{"{filter: {local: [':53', '*.corp.example.com', 'tcp://192.168.0.0/16']}}", ProtocolUDP, "10.0.0.10:53", nil, RouteLocal},
		{"{filter: {local: [':53', '*.corp.example.com', 'tcp://192.168.0.0/16']}}", ProtocolTCP, "1.2.3.4:443", []string{"git.corp.example.com"}, RouteLocal},
		{"{filter: {local: [':53', '*.corp.example.com', 'tcp://192.168.0.0/16']}}", ProtocolTCP, "192.168.1.1:22", nil, RouteLocal},
		{"{filter: {local: [':53', '*.corp.example.com', 'tcp://192.168.0.0/16']}}", ProtocolUDP, "192.168.1.1:22", nil, RouteRemote},
		{"{filter: {local: [':53', '*.corp.example.com', 'tcp://192.168.0.0/16']}}", ProtocolTCP, "10.0.0.1:80", []string{"api.staging.svc"}, RouteRemote},
		// A remote filter: only matches go through the pod.
		{"{filter: {remote: ['postgres:5432', '10.96.0.0/12']}}", ProtocolTCP, "10.0.0.5:5432", []string{"postgres.staging.svc.cluster.local"}, RouteRemote},
		{"{filter: {remote: ['postgres:5432', '10.96.0.0/12']}}", ProtocolTCP, "10.100.0.1:80", nil, RouteRemote},
		{"{filter: {remote: ['postgres:5432', '10.96.0.0/12']}}", ProtocolTCP, "1.1.1.1:443", []string{"example.com"}, RouteLocal},
		// Loopback stays local whatever the filter says, unless ignore_localhost is false.
		{"{filter: {remote: ['127.0.0.1:9000']}}", ProtocolTCP, "127.0.0.1:9000", nil, RouteLocal},
		{"{ignore_localhost: false, filter: {remote: ['127.0.0.1:9000']}}", ProtocolTCP, "127.0.0.1:9000", nil, RouteRemote},
		{"{ignore_localhost: false, filter: {local: ['localhost:5432']}}", ProtocolTCP, "127.0.0.1:5432", nil, RouteLocal},
		{"{ignore_localhost: false, filter: {local: ['localhost:5432']}}", ProtocolTCP, "127.0.0.1:15000", nil, RouteRemote},
	} {
		c := mustParse(t, "feature: {network: {outgoing: "+tc.config+"}}")
		if got := c.Feature.Network.OutgoingRoute(tc.proto, ap(tc.dst), tc.hostnames); got != tc.want {
			t.Errorf("%s: OutgoingRoute(%v, %s, %q) = %v, want %v", tc.config, tc.proto, tc.dst, tc.hostnames, got, tc.want)
		}
	}
}

func TestUnixStreamRoute(t *testing.T) {
	c := mustParse(t, "feature: {network: {outgoing: {unix_streams: '^/var/run/dapr'}}}")
	out := &c.Feature.Network.Outgoing
	if out.UnixStreamRoute("/var/run/dapr/sock") != RouteRemote || out.UnixStreamRoute("/run/docker.sock") != RouteLocal {
		t.Error("unix_streams not applied")
	}
	if Default().Feature.Network.Outgoing.UnixStreamRoute("/var/run/dapr/sock") != RouteLocal {
		t.Error("unix sockets are local by default")
	}
}
