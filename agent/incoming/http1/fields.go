package http1

import (
	"bytes"
	"strconv"
)

// semantics is what the agent reads from the fields of a head: framing
// and connection handling. Everything else is forwarded without a look.
type semantics struct {
	hasLength bool
	length    int64
	codings   [][]byte // Transfer-Encoding list elements, in order
	close     bool     // Connection: close
	keepAlive bool     // Connection: keep-alive
	upgrade   bool     // Connection: upgrade and an Upgrade field
	expect100 bool     // Expect: 100-continue
	hosts     int
}

func readSemantics(fields []field) (semantics, error) {
	var s semantics
	var hasUpgradeField bool
	var connUpgrade bool
	for _, f := range fields {
		switch {
		case equalFold(f.name, "Content-Length"):
			if err := s.addLength(f.value); err != nil {
				return s, err
			}
		case equalFold(f.name, "Transfer-Encoding"):
			for elem := range listElements(f.value) {
				if !isToken(elem) {
					return s, errorf(statusBadRequest, "invalid Transfer-Encoding element %q", elem)
				}
				s.codings = append(s.codings, elem)
			}
			if len(s.codings) == 0 {
				return s, errorf(statusBadRequest, "empty Transfer-Encoding")
			}
		case equalFold(f.name, "Connection"):
			for opt := range listElements(f.value) {
				switch {
				case equalFold(opt, "close"):
					s.close = true
				case equalFold(opt, "keep-alive"):
					s.keepAlive = true
				case equalFold(opt, "upgrade"):
					connUpgrade = true
				}
			}
		case equalFold(f.name, "Upgrade"):
			hasUpgradeField = true
		case equalFold(f.name, "Expect"):
			s.expect100 = s.expect100 || equalFold(f.value, "100-continue")
		case equalFold(f.name, "Host"):
			s.hosts++
		}
	}
	s.upgrade = hasUpgradeField && connUpgrade
	return s, nil
}

// addLength takes one Content-Length field. RFC 9110 §8.6 lets a list of
// identical values ("42, 42", or the field twice) stand for one; values
// that differ, or anything but digits, are refused.
func (s *semantics) addLength(value []byte) error {
	n := 0
	for elem := range listElements(value) {
		n++
		if len(elem) > 18 || !allDigits(elem) {
			return errorf(statusBadRequest, "invalid Content-Length %q", value)
		}
		v, _ := strconv.ParseInt(string(elem), 10, 64)
		if s.hasLength && v != s.length {
			return errorf(statusBadRequest, "Content-Length values differ")
		}
		s.hasLength, s.length = true, v
	}
	if n == 0 {
		return errorf(statusBadRequest, "empty Content-Length")
	}
	return nil
}

// chunked reports whether the last transfer coding is chunked, and
// refuses chunked applied twice (RFC 9112 §7).
func (s *semantics) chunked() (last bool, err error) {
	for i, c := range s.codings {
		if equalFold(c, "chunked") && i != len(s.codings)-1 {
			return false, errorf(statusBadRequest, "chunked is not the final transfer coding")
		}
	}
	return len(s.codings) > 0 && equalFold(s.codings[len(s.codings)-1], "chunked"), nil
}

// listElements yields the elements of a comma-separated field value
// without their whitespace. An empty element ("a,,b", "chunked,") is
// yielded too, as an empty slice, so that callers can refuse it: servers
// disagree on whether it counts.
func listElements(value []byte) func(yield func([]byte) bool) {
	return func(yield func([]byte) bool) {
		if len(trimOWS(value)) == 0 {
			return
		}
		for elem := range bytes.SplitSeq(value, []byte(",")) {
			if !yield(trimOWS(elem)) {
				return
			}
		}
	}
}

func allDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// equalFold compares ASCII without regard to case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
