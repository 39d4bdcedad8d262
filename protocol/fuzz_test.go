package protocol

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the frame reader and every message
// decoder, as a hostile or broken peer would. Nothing may panic, hang or
// allocate beyond the frame limit; what decodes must re-encode to a stable
// form (decode ∘ encode is idempotent). Seeds: testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	f.Add(frameOf(`{"protocol":1,"session":"s","token":"t","client":{"user":"u","pid":1}}`))
	f.Add(frameOf(`{"id":1,"op":"stat","timeout_ms":5,"args":{"path":"/etc/hosts"}}`))
	f.Add(frameOf(`{"id":1,"result":{"info":{"name":"hosts","mode":33188,"size":12}}}`))
	f.Add(frameOf(`{"kind":"dial","network":"udp","address":"10.0.0.1:53"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		// A small limit, so that length prefixes above it are exercised
		// as often as those below.
		const limit = 4096
		r := bytes.NewReader(data)
		for range 64 {
			body, err := readFrame(r, limit)
			if err != nil {
				break
			}
			if len(body) > limit {
				t.Fatalf("frame of %d bytes passed a %d limit", len(body), limit)
			}
			for _, newMsg := range messageTypes {
				checkRoundTrip(t, body, newMsg)
			}
		}
		buf := make([]byte, MaxDatagramSize)
		r = bytes.NewReader(data)
		for range 64 {
			if _, err := readDatagram(r, buf); err != nil {
				break
			}
		}
	})
}

var messageTypes = []func() message{
	func() message { return &Hello{} },
	func() message { return &HelloReply{} },
	func() message { return &Request{} },
	func() message { return &Response{} },
	func() message { return &StreamHeader{} },
	func() message { return &DialReply{} },
	func() message { return &OpenReply{} },
}

func checkRoundTrip(t *testing.T, body []byte, newMsg func() message) {
	m := newMsg()
	if err := decode(body, m); err != nil {
		return
	}
	first, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("%T decoded but does not encode: %v", m, err)
	}
	again := newMsg()
	if err := decode(first, again); err != nil {
		t.Fatalf("%T re-encoded as %s does not decode: %v", m, first, err)
	}
	second, err := json.Marshal(again)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Fatalf("%T unstable:\n%s\n%s", m, first, second)
	}
}
