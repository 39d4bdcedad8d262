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

// matchToken returns the index of the hash token matches, or -1. Every
// hash is compared, in constant time, whatever matched.
func matchToken(hashes []TokenHash, token string) int {
	got := HashToken(token)
	match := -1
	for i, h := range hashes {
		if subtle.ConstantTimeCompare(got[:], h[:]) == 1 {
			match = i
		}
	}
	return match
}
