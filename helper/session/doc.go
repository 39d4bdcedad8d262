// Package session is the engine shared by `doppel exec` and `doppel ide`: one
// session per run owns the agent connection, the local tunnel listener, the
// UDP relays, the DNS responder, the remote file cache, and answers the
// layer's questions about the local process tree (layer.Handler).
//
// Liveness belongs here, never to the local process: a debuggee stopped at a
// breakpoint does not stop the session's keepalives.
package session
