//go:build linux

package redirect

import (
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPortSet(t *testing.T) {
	var s portSet
	s = s.with(8080).with(80).with(443).with(80)
	if !slices.Equal(s, portSet{80, 443, 8080}) {
		t.Fatalf("with: %v", s)
	}
	old := s
	s = s.without(443).without(9)
	if !slices.Equal(s, portSet{80, 8080}) || !slices.Equal(old, portSet{80, 443, 8080}) {
		t.Fatalf("without: %v (old %v)", s, old)
	}
	if !s.has(80) || s.has(443) {
		t.Fatal("has")
	}
}

func TestChecks(t *testing.T) {
	if checkConfig(0, 1) == nil || checkConfig(1, 0) == nil || checkConfig(1, 1) != nil {
		t.Error("checkConfig")
	}
	if checkPort(0, 15001) == nil || checkPort(15001, 15001) == nil || checkPort(80, 15001) != nil {
		t.Error("checkPort")
	}
}

func TestIptablesRules(t *testing.T) {
	r := &iptRedirector{listen: 15001, mark: 0x6d9}
	pre, out := r.rules(8080)
	if got, want := slices.Concat(pre, []string{"|"}, out), []string{
		"-p", "tcp", "--dport", "8080", "--tcp-flags", "SYN,ACK", "SYN", "-j", "REDIRECT", "--to-ports", "15001", "|",
		"-o", "lo", "-p", "tcp", "--dport", "8080", "--tcp-flags", "SYN,ACK", "SYN",
		"-m", "mark", "!", "--mark", "0x6d9", "-j", "REDIRECT", "--to-ports", "15001",
	}; !slices.Equal(got, want) {
		t.Errorf("rules:\n got %q\nwant %q", got, want)
	}
}

func TestParseDiagMsg(t *testing.T) {
	b := make([]byte, sizeofInetDiagMsg, sizeofInetDiagMsg+8)
	b[0], b[1] = unix.AF_INET6, unix.BPF_TCP_ESTABLISHED
	binary.BigEndian.PutUint16(b[4:], 8080)
	binary.BigEndian.PutUint16(b[6:], 40000)
	local := netip.MustParseAddr("::ffff:10.251.1.2").As16()
	remote := netip.MustParseAddr("fd00:251:1::1").As16()
	copy(b[8:], local[:])
	copy(b[24:], remote[:])
	// INET_DIAG_MARK attribute: length 8, type 15, value.
	b = binary.NativeEndian.AppendUint16(b, 8)
	b = binary.NativeEndian.AppendUint16(b, inetDiagMark)
	b = binary.NativeEndian.AppendUint32(b, 0x6d9)
	s, err := parseDiagMsg(b)
	if err != nil {
		t.Fatal(err)
	}
	if s.local != netip.MustParseAddrPort("10.251.1.2:8080") || s.remote != netip.MustParseAddrPort("[fd00:251:1::1]:40000") {
		t.Errorf("addresses %v %v", s.local, s.remote)
	}
	if !s.hasMark || s.mark != 0x6d9 || len(s.id) != 48 {
		t.Errorf("mark %v %#x, id %d bytes", s.hasMark, s.mark, len(s.id))
	}
}

// Without a redirect there is no original destination to tell.
func TestOriginalDstNotRedirected(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	od, err := OriginalDst(s)
	// With conntrack tracking loopback, the answer is the listener itself.
	if err == nil && od.String() != l.Addr().String() {
		t.Errorf("OriginalDst = %v, want %v or an error", od, l.Addr())
	}
	if _, err := OriginalDst(&net.UnixConn{}); err == nil {
		t.Error("OriginalDst of a unix conn succeeded")
	}
}
