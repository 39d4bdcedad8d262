package h2

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// upstreamHost is the URL host of every upstream request. The upstream sees the client's
// :authority (Request.Host) instead; this only names the single connection pool inside each
// upstream's transport.
const upstreamHost = "localhost"

type proxy struct {
	pool      *Pool
	route     func(*http.Request) Upstream
	original  Upstream
	log       *slog.Logger
	onRequest func()
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.onRequest()
	if r.Method == http.MethodConnect {
		// CONNECT (and extended CONNECT) tunnels are not proxied per stream.
		w.WriteHeader(http.StatusNotImplemented)
		return
	}
	var up Upstream
	if p.route != nil {
		up = p.route(r)
	}
	if up == nil {
		up = p.original
	}
	out := outgoingRequest(r)
	info := &informational{w: w}
	ctx := httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{Got1xxResponse: info.forward})
	res, err := p.roundTrip(up, out.WithContext(ctx))
	if err != nil && up != p.original && errors.Is(err, ErrUseOriginal) {
		// The session is gone and nothing of the request was sent: the original server
		// answers it, as it would have, had the route been looked up a moment later.
		p.log.Debug("h2: upstream gone, request to the original", "upstream", up.Key(), "path", r.URL.Path, "err", err)
		up = p.original
		res, err = p.roundTrip(up, out.WithContext(ctx))
	}
	info.stop() // before w is written to, or ServeHTTP returns
	if err != nil {
		if r.Context().Err() != nil {
			return // the client reset the stream or went away
		}
		p.badGateway(w, r, up, err)
		return
	}
	defer res.Body.Close()

	h := w.Header()
	for k, vv := range res.Header {
		h[k] = vv
	}
	// Don't let the server add what the upstream did not send: a nil value suppresses the
	// server's Date, sniffed Content-Type and computed Content-Length.
	for _, k := range []string{"Date", "Content-Type", "Content-Length"} {
		if _, ok := res.Header[k]; !ok {
			h[k] = nil
		}
	}
	if len(res.Trailer) > 0 { // the upstream declared trailers in a "trailer" header
		keys := make([]string, 0, len(res.Trailer))
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		h["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	w.WriteHeader(res.StatusCode)
	rc := http.NewResponseController(w)
	// A response that ended with its HEADERS frame (res.ContentLength is then 0) must stay a
	// single HEADERS frame with END_STREAM (gRPC's trailers-only responses): don't flush.
	// Any other gets its headers at once: a gRPC client may wait for them before it sends.
	if res.ContentLength != 0 {
		if err := rc.Flush(); err != nil {
			return
		}
	}

	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n, rerr := res.Body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return // the client is gone; the deferred Close resets the upstream stream
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// The upstream reset the stream or its connection broke mid-response: reset the
			// client's stream too rather than end it cleanly (a gRPC client would take a
			// clean end without trailers for a complete response).
			p.log.Debug("h2: upstream response failed", "upstream", up.Key(), "path", r.URL.Path, "err", rerr)
			panic(http.ErrAbortHandler)
		}
	}
	for k, vv := range res.Trailer {
		if len(vv) > 0 {
			h[http.TrailerPrefix+k] = vv
		}
	}
}

// informational passes an upstream's 1xx responses on to the client. The
// transport calls forward on its read loop, which may still deliver one
// after the client reset the stream and ServeHTTP returned: w must not be
// touched then (net/http panics, on a goroutine without recover).
type informational struct {
	w    http.ResponseWriter
	mu   sync.Mutex
	done bool
}

func (in *informational) forward(code int, header textproto.MIMEHeader) error {
	// Not 100 Continue: the server answers the client's Expect itself, and
	// the upstream never sees it.
	if code == http.StatusContinue {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.done {
		return nil
	}
	h := in.w.Header()
	for k, vv := range header {
		h[k] = vv
	}
	in.w.WriteHeader(code)
	clear(h)
	return nil
}

// stop drops the 1xx responses that arrive after it.
func (in *informational) stop() {
	in.mu.Lock()
	in.done = true
	in.mu.Unlock()
}

func (p *proxy) roundTrip(up Upstream, out *http.Request) (*http.Response, error) {
	ents, err := p.pool.transport(up)
	if err != nil {
		return nil, err
	}
	return ents.roundTrip(out)
}

func (p *proxy) badGateway(w http.ResponseWriter, r *http.Request, up Upstream, err error) {
	p.log.Debug("h2: upstream unavailable", "upstream", up.Key(), "path", r.URL.Path, "err", err)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusBadGateway)
	io.WriteString(w, "doppel: upstream unavailable\n")
}

// outgoingRequest builds the upstream request from the client's: same method, :path (as
// received), :authority, headers, body and trailers; nothing added.
func outgoingRequest(r *http.Request) *http.Request {
	u := &url.URL{Scheme: "http", Host: upstreamHost}
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	path, query, hasQuery := strings.Cut(uri, "?")
	if strings.HasPrefix(path, "//") {
		// URL.RequestURI would turn an opaque "//x" into a scheme-relative URL.
		u.Path, u.RawPath = r.URL.Path, r.URL.RawPath
	} else {
		u.Opaque = path
	}
	u.RawQuery = query
	u.ForceQuery = hasQuery && query == ""

	header := r.Header.Clone()
	if header == nil {
		header = make(http.Header)
	}
	if _, ok := header["User-Agent"]; !ok {
		header["User-Agent"] = nil // the transport would add its own otherwise
	}
	out := &http.Request{
		Method:        r.Method,
		URL:           u,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        header,
		Host:          r.Host,
		Body:          r.Body,
		ContentLength: r.ContentLength,
		// The same map: the server fills in the trailers' values when the body reaches EOF,
		// before the transport reads them.
		Trailer: r.Trailer,
	}
	if r.ContentLength == 0 {
		// The client's HEADERS ended the stream (or it declared content-length: 0): send no
		// body, so the upstream's HEADERS end the stream too.
		out.Body = nil
	}
	return out
}
