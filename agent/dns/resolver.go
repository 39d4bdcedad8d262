// Package dns forwards raw DNS messages to the pod's resolver: the
// nameservers of the target's /etc/resolv.conf, reached from the pod's
// network namespace, over UDP with a TCP retry when the answer is
// truncated. Answers pass through unchanged, NXDOMAIN included, so the
// local process sees what a process in the pod would.
package dns

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Resolver forwards queries to the pod's nameservers.
type Resolver struct {
	// ResolvConf returns the pod's /etc/resolv.conf. It is read for every
	// query, so edits in the pod apply at once, as they do for glibc.
	ResolvConf func() ([]byte, error)
	// Dial connects from the pod's network namespace ("udp" or "tcp",
	// "IP:port").
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// Config is what the resolver uses of resolv.conf.
type Config struct {
	Nameservers []netip.AddrPort
	Timeout     time.Duration // per try: options timeout:N
	Attempts    int           // rounds over the nameservers: options attempts:N
	UseTCP      bool          // options use-vc
}

// resolv.conf defaults, as glibc has them.
const (
	defaultTimeout  = 5 * time.Second
	defaultAttempts = 2
	maxNameservers  = 3
	headerSize      = 12
	maxMessageSize  = 1<<16 - 1
)

// ParseResolvConf reads the parts of resolv.conf the resolver uses. With no
// nameserver, glibc's default applies: the pod's own loopback.
func ParseResolvConf(data []byte) Config {
	cfg := Config{Timeout: defaultTimeout, Attempts: defaultAttempts}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "nameserver":
			if len(cfg.Nameservers) >= maxNameservers {
				continue
			}
			if ip, err := netip.ParseAddr(fields[1]); err == nil {
				cfg.Nameservers = append(cfg.Nameservers, netip.AddrPortFrom(ip, 53))
			}
		case "options":
			for _, opt := range fields[1:] {
				name, value, _ := strings.Cut(opt, ":")
				n, err := strconv.Atoi(value)
				switch {
				case name == "timeout" && err == nil && n > 0:
					cfg.Timeout = time.Duration(min(n, 30)) * time.Second
				case name == "attempts" && err == nil && n > 0:
					cfg.Attempts = min(n, 5)
				case name == "use-vc" || name == "usevc" || name == "tcp":
					cfg.UseTCP = true
				}
			}
		}
	}
	if len(cfg.Nameservers) == 0 {
		cfg.Nameservers = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")}
	}
	return cfg
}

// QueryError is a failure to get any answer from the pod's nameservers.
type QueryError struct {
	Err    syscall.Errno
	Detail string
}

func (e *QueryError) Error() string        { return "dns: " + e.Detail }
func (e *QueryError) Errno() syscall.Errno { return e.Err }
func (e *QueryError) Unwrap() error        { return e.Err }

// Exchange sends query (a DNS message without TCP length prefix) to the
// pod's nameservers in resolv.conf order and returns the first answer. A
// server answering SERVFAIL, NOTIMP or REFUSED is passed over for the next
// one, as glibc does; if all do, the last such answer is returned.
func (r *Resolver) Exchange(ctx context.Context, query []byte) ([]byte, error) {
	if len(query) < headerSize || len(query) > maxMessageSize {
		return nil, &QueryError{Err: syscall.EINVAL, Detail: fmt.Sprintf("a DNS message is %d to %d bytes, got %d", headerSize, maxMessageSize, len(query))}
	}
	conf, err := r.ResolvConf()
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		return nil, &QueryError{Err: syscall.EIO, Detail: fmt.Sprintf("reading the pod's resolv.conf: %v", err)}
	}
	cfg := ParseResolvConf(conf)
	var fallback []byte
	var lastErr error
	for range cfg.Attempts {
		for _, ns := range cfg.Nameservers {
			answer, err := r.exchangeWith(ctx, cfg, ns.String(), query)
			if ctx.Err() != nil {
				e := &QueryError{Err: syscall.ETIMEDOUT, Detail: fmt.Sprintf("no answer in time: %v", ctx.Err())}
				if errors.Is(ctx.Err(), context.Canceled) {
					e.Err = syscall.ECANCELED
				}
				return nil, e
			}
			if err != nil {
				lastErr = fmt.Errorf("%s: %w", ns, err)
				continue
			}
			switch rcode(answer) {
			case rcodeServFail, rcodeNotImp, rcodeRefused:
				fallback = answer
				continue
			}
			return answer, nil
		}
	}
	if fallback != nil {
		return fallback, nil
	}
	e := &QueryError{Err: syscall.ETIMEDOUT, Detail: fmt.Sprintf("no nameserver of the pod answered: %v", lastErr)}
	var errno syscall.Errno
	if errors.As(lastErr, &errno) {
		e.Err = errno
	}
	return nil, e
}

const (
	rcodeServFail = 2
	rcodeNotImp   = 4
	rcodeRefused  = 5
)

func rcode(msg []byte) int      { return int(msg[3] & 0x0f) }
func truncated(msg []byte) bool { return msg[2]&0x02 != 0 }

// exchangeWith asks one nameserver, retrying over TCP when the UDP answer
// is truncated. Each try has the timeout of its own; a truncated answer
// whose TCP retry failed is still an answer (TC set: the caller may ask
// again).
func (r *Resolver) exchangeWith(ctx context.Context, cfg Config, server string, query []byte) ([]byte, error) {
	try := func(exchange func(context.Context, string, []byte) ([]byte, error)) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
		return exchange(ctx, server, query)
	}
	if cfg.UseTCP {
		return try(r.exchangeTCP)
	}
	answer, err := try(r.exchangeUDP)
	if err != nil || !truncated(answer) {
		return answer, err
	}
	if full, err := try(r.exchangeTCP); err == nil {
		return full, nil
	}
	return answer, nil
}

func (r *Resolver) exchangeUDP(ctx context.Context, server string, query []byte) ([]byte, error) {
	conn, err := r.Dial(ctx, "udp", server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	defer bindDeadline(ctx, conn)()
	if _, err := conn.Write(query); err != nil {
		return nil, err
	}
	buf := make([]byte, maxMessageSize)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return nil, err
		}
		// A connected UDP socket only hears from the server; what does
		// not answer this query (a late answer to an earlier try) is
		// skipped, as resolvers do.
		if answers(query, buf[:n]) {
			return append([]byte(nil), buf[:n]...), nil
		}
	}
}

func (r *Resolver) exchangeTCP(ctx context.Context, server string, query []byte) ([]byte, error) {
	conn, err := r.Dial(ctx, "tcp", server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	defer bindDeadline(ctx, conn)()
	msg := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(query)), uint16(len(query)))
	if _, err := conn.Write(append(msg, query...)); err != nil {
		return nil, err
	}
	var hdr [2]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return nil, err
	}
	answer := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(conn, answer); err != nil {
		return nil, err
	}
	if !answers(query, answer) {
		return nil, fmt.Errorf("the TCP answer does not match the query")
	}
	return answer, nil
}

// answers reports whether msg is a response with query's id.
func answers(query, msg []byte) bool {
	return len(msg) >= headerSize && msg[0] == query[0] && msg[1] == query[1] && msg[2]&0x80 != 0
}

// bindDeadline applies ctx's deadline to conn and wakes conn's reads and
// writes when ctx is cancelled earlier.
func bindDeadline(ctx context.Context, conn net.Conn) (stop func() bool) {
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	return context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
}
