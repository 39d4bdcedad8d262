package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestCopyChunked(t *testing.T) {
	for _, body := range []string{
		"0\r\n\r\n",
		"5\r\nhello\r\n0\r\n\r\n",
		"5;name=value;flag\r\nhello\r\n00\r\nExpires: never\r\nX-Sum: 1\r\n\r\n",
		"A\r\n0123456789\r\n1; a = \"q\\\"x\" ;b\r\n!\r\n0;last\r\n\r\n",
		"0000000000000001\r\nx\r\n0\r\n\r\n",
	} {
		const next = "GET /next HTTP/1.1\r\n"
		br := bufio.NewReader(strings.NewReader(body + next))
		var out bytes.Buffer
		n, err := CopyChunked(&out, br, Limits{})
		if err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		if out.String() != body || n != int64(len(body)) {
			t.Fatalf("%q: copied %q (%d)", body, out.String(), n)
		}
		rest, _ := io.ReadAll(br)
		if string(rest) != next {
			t.Fatalf("%q: left %q", body, rest)
		}
	}
}

// TestCopyChunkedRefusals: framing that parsers are known to read in
// different ways ("funky chunks", TE.TE desync) is refused, and what was
// written before the refusal is a valid prefix that ends on a line.
func TestCopyChunkedRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		copied     string
	}{
		{"no size", "\r\nx\r\n0\r\n\r\n", ""},
		{"sign", "+5\r\nhello\r\n0\r\n\r\n", ""},
		{"hex prefix", "0x5\r\nhello\r\n0\r\n\r\n", ""},
		{"space after size", "5 \r\nhello\r\n0\r\n\r\n", ""},
		// RFC 9112 allows BWS there; Go's chunked reader (and others) don't.
		{"space before extension", "5 ;a\r\nhello\r\n0\r\n\r\n", ""},
		{"bare LF size line", "5\nhello\r\n0\r\n\r\n", ""},
		{"bare LF in extension", "5;a\nb\r\nhello\r\n0\r\n\r\n", ""},
		{"bare CR in extension", "5;a\rb\r\nhello\r\n0\r\n\r\n", ""},
		{"NUL in extension", "0;a=\x00\r\n\r\n", ""},
		{"extension without name", "5;\r\nhello\r\n0\r\n\r\n", ""},
		{"extension bad value", "5;a=b c\r\nhello\r\n0\r\n\r\n", ""},
		{"unterminated quote", "5;a=\"b\r\nhello\r\n0\r\n\r\n", ""},
		{"too large", "2000000000000000\r\n", ""},
		{"17 digits", "00000000000000001\r\nx\r\n0\r\n\r\n", ""},
		{"data too long", "3\r\nhello\r\n0\r\n\r\n", "3\r\nhel"},
		{"data too short", "5\r\nhi\r\n\r\n0\r\n\r\n", "5\r\nhi\r\n\r"},
		{"LF after data", "5\r\nhello\n0\r\n\r\n", "5\r\nhello"},
		{"obs-fold trailer", "0\r\nA: b\r\n c\r\n\r\n", "0\r\n"},
		{"trailer space before colon", "0\r\nA : b\r\n\r\n", "0\r\n"},
		{"trailer bare LF", "0\r\nA: b\n\r\n", "0\r\n"},
		{"trailer too large", "0\r\nA: " + strings.Repeat("b", 16<<10) + "\r\n\r\n", "0\r\n"},
		{"line too long", "1;" + strings.Repeat("a", 4<<10) + "\r\nx\r\n0\r\n\r\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := CopyChunked(&out, bufio.NewReader(strings.NewReader(tc.body)), Limits{})
			var e *Error
			if !errors.As(err, &e) || e.Status != 400 {
				t.Fatalf("CopyChunked = %v, want a 400", err)
			}
			if out.String() != tc.copied {
				t.Fatalf("copied %q before the refusal, want %q", out.String(), tc.copied)
			}
		})
	}
	for _, body := range []string{"5\r\nhel", "5\r\nhello", "5\r\nhello\r", "0\r\n", "0\r\nA: b\r\n", "5"} {
		_, err := CopyChunked(io.Discard, bufio.NewReader(strings.NewReader(body)), Limits{})
		if err != io.ErrUnexpectedEOF {
			t.Fatalf("%q: %v, want io.ErrUnexpectedEOF", body, err)
		}
	}
}
