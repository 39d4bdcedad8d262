package http1

import (
	"bufio"
	"io"
	"net"
)

// tunnel carries raw bytes both ways after a 101 or a CONNECT 2xx, the
// bytes already buffered on either side first. When one side ends its
// direction, the other is told with a half-close where the connection has
// one; otherwise both close. It returns when both directions are done.
func tunnel(client net.Conn, cbr *bufio.Reader, up net.Conn, ubr *bufio.Reader) error {
	errc := make(chan error, 2)
	pipe := func(dst net.Conn, src *bufio.Reader, other net.Conn) {
		_, err := io.Copy(dst, src)
		if err != nil || !closeWrite(dst) {
			dst.Close()
			other.Close()
		}
		errc <- err
	}
	go pipe(up, cbr, client)
	go pipe(client, ubr, up)
	err := <-errc
	if err2 := <-errc; err == nil {
		err = err2
	}
	return err
}

func closeWrite(c net.Conn) bool {
	cw, ok := c.(interface{ CloseWrite() error })
	return ok && cw.CloseWrite() == nil
}
