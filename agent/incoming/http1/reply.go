package http1

import (
	"fmt"
	"io"
	"net"
	"time"
)

// linger bounds how long a refused client's remaining bytes are read and
// dropped after the refusal: closing a socket with unread data makes the
// kernel send a reset, which can destroy the refusal before it is read.
const linger = 500 * time.Millisecond

// refuse answers a request the agent does not forward and closes the
// connection.
func refuse(conn net.Conn, status int) {
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", status, statusText(status))
	closeGracefully(conn)
}

// closeGracefully half-closes conn, drains what the peer still sends for
// a moment, then closes it.
func closeGracefully(conn net.Conn) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		conn.SetReadDeadline(time.Now().Add(linger))
		io.CopyN(io.Discard, conn, 1<<20)
	}
	conn.Close()
}
