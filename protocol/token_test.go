package protocol

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"testing"
)

func TestToken(t *testing.T) {
	tok := NewToken()
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(tok) {
		t.Fatalf("token %q is not 64 hex digits", tok)
	}
	if NewToken() == tok {
		t.Fatal("two equal tokens")
	}
	h := HashToken(tok)
	sum := sha256.Sum256([]byte(tok))
	if h.String() != hex.EncodeToString(sum[:]) {
		t.Fatal("hash is not sha256 of the token text")
	}
	parsed, err := ParseTokenHash(h.String())
	if err != nil || parsed != h {
		t.Fatalf("ParseTokenHash: %v", err)
	}
	for _, bad := range []string{"", "zz", h.String()[:62], h.String() + "00"} {
		if _, err := ParseTokenHash(bad); err == nil {
			t.Errorf("ParseTokenHash(%q) accepted", bad)
		}
	}
	other := HashToken(NewToken())
	if got, ok := matchToken([]TokenHash{other, h}, tok); !ok || got != h {
		t.Fatalf("matchToken = %v, %v, want %v", got, ok, h)
	}
	if got, ok := matchToken([]TokenHash{h, other, h}, tok); !ok || got != h {
		t.Fatalf("matchToken with a duplicate = %v, %v", got, ok)
	}
	if _, ok := matchToken([]TokenHash{other}, tok); ok {
		t.Fatal("matchToken matched another hash")
	}
	if _, ok := matchToken(nil, ""); ok {
		t.Fatal("matchToken matched with no hashes")
	}
	if !sameHash(h, h) || sameHash(h, other) {
		t.Fatal("sameHash")
	}
}
