package protocol

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
)

// TokenHash is the SHA-256 of a token's text. The agent is configured with
// hashes only, so reading the agent pod's spec does not let anyone connect.
type TokenHash [sha256.Size]byte

// NewToken returns a fresh session token: 32 random bytes as 64 lowercase
// hex digits.
func NewToken() string {
	var b [32]byte
	// crypto/rand.Read never fails on supported platforms (it panics
	// rather than return short), so there is no error to hand back.
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// HashToken returns the hash an agent is configured with for token: the
// SHA-256 of the token's text, as `printf %s TOKEN | sha256sum` prints it.
func HashToken(token string) TokenHash {
	return sha256.Sum256([]byte(token))
}

// String is the hash in lowercase hex, the agent's --token-sha256 form.
func (h TokenHash) String() string { return hex.EncodeToString(h[:]) }

// TokenAnnotationPrefix starts the agent pod annotations that carry the
// hashes of sessions joining a running agent:
// "token.doppel.dev/<first 16 hex digits>: <64 hex digits>". The agent
// reads them through a downward API file (its --token-file).
const TokenAnnotationPrefix = "token.doppel.dev/"

// Annotation is the annotation key that carries h on an agent pod.
func (h TokenHash) Annotation() string { return TokenAnnotationPrefix + h.String()[:16] }

// ParseTokenHash parses 64 hex digits.
func ParseTokenHash(s string) (TokenHash, error) {
	var h TokenHash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("token hash must be %d hex digits", 2*len(h))
	}
	copy(h[:], b)
	return h, nil
}

// matchToken returns the hash among hashes that token matches. Every hash
// is compared, in constant time, whatever matched, so the time taken says
// nothing about which hash (or how much of one) matched.
func matchToken(hashes []TokenHash, token string) (TokenHash, bool) {
	got := HashToken(token)
	var match TokenHash
	found := 0
	for _, h := range hashes {
		eq := subtle.ConstantTimeCompare(got[:], h[:])
		subtle.ConstantTimeCopy(eq, match[:], h[:])
		found |= eq
	}
	return match, found == 1
}

// sameHash compares two hashes in constant time.
func sameHash(a, b TokenHash) bool {
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}
