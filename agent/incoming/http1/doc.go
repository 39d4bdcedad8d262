// Package http1 routes the HTTP/1.x requests of one client connection,
// each to the upstream a filter picks or to the original server, and
// forwards every byte as received: heads, bodies, chunk framing, trailers
// and responses are never rewritten.
//
// Forwarding raw bytes is only safe if every party agrees on where each
// message ends, so the reader is stricter than RFC 9112 requires and
// refuses what could be read two ways (see ReadRequest for the list).
// A request the agent refuses is answered here (400, 408, 431, 501, 505)
// and nothing of it reaches an upstream.
//
// Even so, the persistent connection to the original server belongs to one
// client connection only: a request a lenient server reads differently
// could only confuse that client's own exchange, never another client's.
package http1
