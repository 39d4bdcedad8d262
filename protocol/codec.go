package protocol

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Frame limits. A peer that receives a larger frame treats it as a protocol
// error and drops the connection: it cannot skip what it will not read.
const (
	// MaxMessageSize bounds one control-stream message (request or response).
	MaxMessageSize = 1 << 20
	// MaxHeaderSize bounds the hello, its reply and data-stream headers and
	// replies, which are read before the peer is trusted or the stream's
	// purpose is known.
	MaxHeaderSize = 64 << 10
	// MaxDatagramSize is the largest UDP payload a dial udp stream carries
	// (the 2-byte length prefix's range).
	MaxDatagramSize = 1<<16 - 1

	frameHeaderSize = 4
)

var (
	// ErrMessageTooLarge is returned for a frame beyond its limit, on either
	// side: when encoding (the message is not sent) or decoding.
	ErrMessageTooLarge = errors.New("protocol: message too large")
	// ErrMalformed wraps every decoding failure of a frame's JSON.
	ErrMalformed = errors.New("protocol: malformed message")
)

// writeMessage encodes v as one frame: a 4-byte big-endian length and the
// JSON text. The frame goes out in a single Write so that concurrent writers
// serialized by a mutex never interleave partial frames.
func writeMessage(w io.Writer, v any, limit int) error {
	frame, err := encodeFrame(v, limit)
	if err != nil {
		return err
	}
	_, err = w.Write(frame)
	return err
}

// encodeFrame is writeMessage's frame, for a caller that writes it later.
func encodeFrame(v any, limit int) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("protocol: encoding %T: %w", v, err)
	}
	if len(body) > limit {
		return nil, fmt.Errorf("%w: %T is %d bytes, limit %d", ErrMessageTooLarge, v, len(body), limit)
	}
	frame := make([]byte, frameHeaderSize+len(body))
	binary.BigEndian.PutUint32(frame, uint32(len(body)))
	copy(frame[frameHeaderSize:], body)
	return frame, nil
}

// readFrame reads one frame's body. It allocates at most limit bytes
// whatever the peer claims.
func readFrame(r io.Reader, limit int) ([]byte, error) {
	var hdr [frameHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return nil, fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	if uint64(n) > uint64(limit) {
		return nil, fmt.Errorf("%w: frame of %d bytes, limit %d", ErrMessageTooLarge, n, limit)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return body, nil
}

// message is implemented by every frame type: validate rejects what JSON
// accepts but the protocol does not (a request without an op, ...).
type message interface {
	validate() error
}

// decode parses one frame body into m and validates it.
func decode(body []byte, m message) error {
	if err := json.Unmarshal(body, m); err != nil {
		return fmt.Errorf("%w: %T: %v", ErrMalformed, m, err)
	}
	if err := m.validate(); err != nil {
		return fmt.Errorf("%w: %T: %v", ErrMalformed, m, err)
	}
	return nil
}

// readMessage reads and decodes one frame.
func readMessage(r io.Reader, m message, limit int) error {
	body, err := readFrame(r, limit)
	if err != nil {
		return err
	}
	return decode(body, m)
}

// Limits on fields, so a peer cannot make the other keep unbounded strings
// around in maps and logs.
const (
	maxSessionIDLen = 128
	maxTokenLen     = 256
	maxOpLen        = 64
)

func (h *Hello) validate() error {
	if len(h.SessionID) == 0 || len(h.SessionID) > maxSessionIDLen {
		return fmt.Errorf("session id must be 1 to %d characters", maxSessionIDLen)
	}
	for _, c := range []byte(h.SessionID) {
		if !isIDChar(c) {
			return fmt.Errorf("session id may hold only letters, digits, '.', '_' and '-'")
		}
	}
	if len(h.Token) > maxTokenLen {
		return fmt.Errorf("token longer than %d characters", maxTokenLen)
	}
	return nil
}

func isIDChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}

func (r *HelloReply) validate() error {
	return r.Error.validate()
}

func (r *Request) validate() error {
	if r.Op == "" || len(r.Op) > maxOpLen {
		return fmt.Errorf("op must be 1 to %d characters", maxOpLen)
	}
	if r.TimeoutMS < 0 {
		return fmt.Errorf("negative timeout")
	}
	return nil
}

func (r *Response) validate() error {
	if r.Error == nil && r.Result == nil {
		return fmt.Errorf("response %d has neither error nor result", r.ID)
	}
	return r.Error.validate()
}

func (e *Error) validate() error {
	if e != nil && e.Errno == "" && e.Code == "" && e.Message == "" {
		return fmt.Errorf("empty error")
	}
	return nil
}

func (h *StreamHeader) validate() error {
	if h.TimeoutMS < 0 {
		return fmt.Errorf("negative timeout")
	}
	switch h.Kind {
	case StreamDial:
		if h.Network == "" || h.Address == "" {
			return fmt.Errorf("dial needs network and address")
		}
	case StreamOpen:
		if h.Path == "" {
			return fmt.Errorf("open needs a path")
		}
	case "":
		return fmt.Errorf("missing stream kind")
	}
	// Unknown kinds pass: the agent answers them with a typed error, which
	// is more useful to a newer helper than a dropped stream.
	return nil
}

func (r *DialReply) validate() error { return r.Error.validate() }

func (r *OpenReply) validate() error {
	if r.Error == nil && r.Info == nil {
		return fmt.Errorf("open reply has neither error nor info")
	}
	return r.Error.validate()
}
