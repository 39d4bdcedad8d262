package layer

import (
	"bytes"
	"net/netip"
	"testing"
)

func sockaddrIn(a [4]byte, port uint16) []byte {
	return []byte{2, 0, byte(port >> 8), byte(port), a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0, 0, 0, 0}
}

func sockaddrIn6(a [16]byte, port uint16) []byte {
	b := []byte{10, 0, byte(port >> 8), byte(port), 0, 0, 0, 0}
	b = append(b, a[:]...)
	return append(b, 0, 0, 0, 0)
}

func TestDecodeSockaddr(t *testing.T) {
	mapped := netip.MustParseAddr("::ffff:10.77.0.1").As16()
	cases := []struct {
		name string
		b    []byte
		want string
		ok   bool
	}{
		{"inet", sockaddrIn([4]byte{10, 77, 0, 1}, 80), "10.77.0.1:80", true},
		{"inet6", sockaddrIn6(netip.MustParseAddr("2001:db8::1").As16(), 443), "[2001:db8::1]:443", true},
		{"v4-mapped is unmapped", sockaddrIn6(mapped, 8080), "10.77.0.1:8080", true},
		{"inet6 rfc2133 length", sockaddrIn6(mapped, 1)[:24], "10.77.0.1:1", true},
		{"inet too short", sockaddrIn([4]byte{1, 2, 3, 4}, 1)[:8], "", false},
		{"unix", []byte{1, 0, '/', 't', 'm', 'p', 0}, "", false},
		{"unspec", []byte{0, 0, 0, 0}, "", false},
		{"empty", nil, "", false},
	}
	for _, c := range cases {
		ap, ok := decodeSockaddr(c.b)
		if ok != c.ok || (ok && ap.String() != c.want) {
			t.Errorf("%s: got %v %v, want %q %v", c.name, ap, ok, c.want, c.ok)
		}
	}
}

func TestEncodeSockaddr(t *testing.T) {
	lo := netip.MustParseAddrPort("127.0.0.1:4000")
	cases := []struct {
		name   string
		family int
		ap     netip.AddrPort
		v6only bool
		want   []byte
		err    bool
	}{
		{"inet", afInet, lo, false, sockaddrIn([4]byte{127, 0, 0, 1}, 4000), false},
		{"inet6 gets v4-mapped", afInet6, lo, false, sockaddrIn6(netip.MustParseAddr("::ffff:127.0.0.1").As16(), 4000), false},
		{"v6only gets ::1", afInet6, lo, true, sockaddrIn6(netip.IPv6Loopback().As16(), 4000), false},
		{"inet gets 127.0.0.1 for ::1", afInet, netip.MustParseAddrPort("[::1]:5"), false, sockaddrIn([4]byte{127, 0, 0, 1}, 5), false},
		{"inet cannot reach v6", afInet, netip.MustParseAddrPort("[2001:db8::1]:5"), false, nil, true},
		{"v6only cannot reach v4", afInet6, netip.MustParseAddrPort("10.0.0.1:5"), true, nil, true},
		{"unix", afUnix, lo, false, nil, true},
	}
	for _, c := range cases {
		b, err := encodeSockaddr(c.family, c.ap, c.v6only)
		if (err != nil) != c.err || !bytes.Equal(b, c.want) {
			t.Errorf("%s: got %v %v, want %v (error %v)", c.name, b, err, c.want, c.err)
		}
		if err == nil {
			if ap, ok := decodeSockaddr(b); !ok || ap.Port() != c.ap.Port() {
				t.Errorf("%s: does not decode back: %v %v", c.name, ap, ok)
			}
		}
	}
	if got := withPort(sockaddrIn([4]byte{0, 0, 0, 0}, 1234), 8080); !bytes.Equal(got, sockaddrIn([4]byte{}, 8080)) {
		t.Errorf("withPort: %v", got)
	}
}
