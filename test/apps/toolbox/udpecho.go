package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func udpEchoCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("udp-echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 8080, "UDP port to listen on")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	conn, err := net.ListenPacket("udp", fmt.Sprintf(":%d", *port))
	if err != nil {
		fmt.Fprintf(stderr, "toolbox udp-echo: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "echoing UDP on %s\n", conn.LocalAddr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := echoUDP(ctx, conn); err != nil {
		fmt.Fprintf(stderr, "toolbox udp-echo: %v\n", err)
		return 1
	}
	return 0
}

// echoUDP sends every datagram back to its sender until ctx is done. It
// closes conn.
func echoUDP(ctx context.Context, conn net.PacketConn) error {
	go func() {
		<-ctx.Done()
		conn.Close() // unblocks ReadFrom
	}()
	buf := make([]byte, 64*1024)
	for {
		n, addr, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if _, err := conn.WriteTo(buf[:n], addr); err != nil {
			return err
		}
	}
}
