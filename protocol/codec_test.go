package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

func frameOf(body string) []byte {
	b := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(b, uint32(len(body)))
	copy(b[4:], body)
	return b
}

func TestMessageRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	in := Request{ID: 7, Op: OpStat, TimeoutMS: 1500, Args: []byte(`{"path":"/etc/hosts"}`)}
	if err := writeMessage(&buf, in, MaxMessageSize); err != nil {
		t.Fatal(err)
	}
	if got := binary.BigEndian.Uint32(buf.Bytes()); int(got) != buf.Len()-4 {
		t.Fatalf("length prefix %d, body %d", got, buf.Len()-4)
	}
	var out Request
	if err := readMessage(&buf, &out, MaxMessageSize); err != nil {
		t.Fatal(err)
	}
	if out.ID != in.ID || out.Op != in.Op || out.TimeoutMS != in.TimeoutMS || string(out.Args) != string(in.Args) {
		t.Fatalf("got %+v, want %+v", out, in)
	}
}

func TestWriteMessageTooLarge(t *testing.T) {
	var buf bytes.Buffer
	big := EnvResult{Env: []string{strings.Repeat("x", MaxMessageSize)}}
	err := writeMessage(&buf, big, MaxMessageSize)
	if !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("err = %v, want ErrMessageTooLarge", err)
	}
	if buf.Len() != 0 {
		t.Fatalf("%d bytes written for a refused message", buf.Len())
	}
}

func TestReadFrameLimits(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"too large", binary.BigEndian.AppendUint32(nil, MaxMessageSize+1), ErrMessageTooLarge},
		{"claims 4 GiB", []byte{0xff, 0xff, 0xff, 0xff}, ErrMessageTooLarge},
		{"empty", []byte{0, 0, 0, 0}, ErrMalformed},
		{"short header", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"nothing", nil, io.EOF},
		{"short body", append(binary.BigEndian.AppendUint32(nil, 10), "abc"...), io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readFrame(bytes.NewReader(tt.input), MaxMessageSize)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestDecodeValidates(t *testing.T) {
	tests := []struct {
		name string
		body string
		into message
		ok   bool
	}{
		{"request", `{"id":1,"op":"env"}`, &Request{}, true},
		{"request without op", `{"id":1}`, &Request{}, false},
		{"request negative timeout", `{"id":1,"op":"env","timeout_ms":-1}`, &Request{}, false},
		{"request null", `null`, &Request{}, false},
		{"request array", `[]`, &Request{}, false},
		{"request trailing garbage", `{"id":1,"op":"env"} x`, &Request{}, false},
		{"unknown fields ignored", `{"id":1,"op":"env","future":true}`, &Request{}, true},
		{"response result", `{"id":1,"result":{}}`, &Response{}, true},
		{"response error", `{"id":1,"error":{"errno":"ENOENT"}}`, &Response{}, true},
		{"response empty", `{"id":1}`, &Response{}, false},
		{"response empty error", `{"id":1,"error":{}}`, &Response{}, false},
		{"hello", `{"protocol":1,"session":"s-1","token":"ab"}`, &Hello{}, true},
		{"hello without session", `{"protocol":1,"token":"ab"}`, &Hello{}, false},
		{"hello odd session", `{"protocol":1,"session":"a b","token":"ab"}`, &Hello{}, false},
		{"hello long token", `{"protocol":1,"session":"s","token":"` + strings.Repeat("a", 300) + `"}`, &Hello{}, false},
		{"dial header", `{"kind":"dial","network":"tcp","address":"10.0.0.1:80"}`, &StreamHeader{}, true},
		{"dial header without address", `{"kind":"dial","network":"tcp"}`, &StreamHeader{}, false},
		{"open header", `{"kind":"open","path":"/etc/hosts"}`, &StreamHeader{}, true},
		{"future kind", `{"kind":"listen"}`, &StreamHeader{}, true},
		{"no kind", `{}`, &StreamHeader{}, false},
		{"open reply", `{"info":{"name":"x","mode":33188}}`, &OpenReply{}, true},
		{"open reply empty", `{}`, &OpenReply{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := decode([]byte(tt.body), tt.into)
			if tt.ok && err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestDatagramFraming(t *testing.T) {
	var buf bytes.Buffer
	payload := []byte("hello, pod")
	frame := append(make([]byte, 2), payload...)
	if err := writeDatagram(&buf, frame, len(payload)); err != nil {
		t.Fatal(err)
	}
	if err := writeDatagram(&buf, make([]byte, 2), 0); err != nil { // empty datagrams exist
		t.Fatal(err)
	}
	out := make([]byte, MaxDatagramSize)
	n, err := readDatagram(&buf, out)
	if err != nil || string(out[:n]) != string(payload) {
		t.Fatalf("got %q, %v", out[:n], err)
	}
	n, err = readDatagram(&buf, out)
	if err != nil || n != 0 {
		t.Fatalf("empty datagram: got %d, %v", n, err)
	}
	if _, err := readDatagram(&buf, out); err != io.EOF {
		t.Fatalf("at end: %v", err)
	}
	if _, err := readDatagram(bytes.NewReader([]byte{0, 5, 'a'}), out); err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated: %v", err)
	}
}
