package session

import (
	"net/netip"
	"testing"
	"time"
)

func TestReachableSetExpiresForgetsAndStaysBounded(t *testing.T) {
	r := newReachableSet()
	now := time.Unix(1000, 0)
	r.now = func() time.Time { return now }
	dst := netip.MustParseAddrPort("10.96.0.10:80")
	if r.fresh(dst) {
		t.Fatal("fresh before any dial")
	}
	r.add(dst)
	now = now.Add(reachableTTL - time.Second)
	if !r.fresh(dst) {
		t.Fatal("not fresh within the TTL")
	}
	now = now.Add(2 * time.Second)
	if r.fresh(dst) {
		t.Fatal("fresh after the TTL")
	}
	r.add(dst)
	r.forget(dst)
	if r.fresh(dst) {
		t.Fatal("fresh after a refusal")
	}

	for i := range maxReachable {
		r.add(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 80))
	}
	r.add(dst) // full of fresh entries: not kept
	if r.fresh(dst) || len(r.seen) != maxReachable {
		t.Fatalf("a full set took another entry (%d entries)", len(r.seen))
	}
	now = now.Add(reachableTTL)
	r.add(dst) // the expired ones make room
	if !r.fresh(dst) || len(r.seen) != 1 {
		t.Fatalf("expired entries kept: %d entries", len(r.seen))
	}
}
