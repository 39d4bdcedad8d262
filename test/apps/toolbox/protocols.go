package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Handlers and clients for traffic beside plain HTTP/1 requests: an
// Upgrade that turns the connection into a line echo (as WebSocket does
// after its 101), a gRPC-shaped call over cleartext HTTP/2 with trailers,
// and raw bytes that are no HTTP at all. Each answer names the server
// (serve -name), so a test can tell who answered.

// protocolHandlers adds /upgrade and /echo.Echo/Say to mux.
func protocolHandlers(mux *http.ServeMux, name string) {
	mux.HandleFunc("GET /upgrade", func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "echo") {
			http.Error(w, "want Upgrade: echo", http.StatusUpgradeRequired)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := fmt.Fprintf(conn, "%s: %s", name, line); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("POST /echo.Echo/Say", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		io.WriteString(w, name)
		w.Header().Set("Grpc-Status", "0")
	})
}

// upgradeCmd: toolbox upgrade [-H 'Name: value']... URL LINE... — asks for
// Upgrade: echo, then sends each line and prints each answer.
func upgradeCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("upgrade", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var headers headerFlags
	fs.Var(&headers, "H", `a request header "Name: value" (repeatable)`)
	if err := fs.Parse(args); err != nil || fs.NArg() < 2 {
		fmt.Fprintln(stderr, "usage: toolbox upgrade [-H 'Name: value']... URL LINE...")
		return 2
	}
	u, err := url.Parse(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, "toolbox upgrade:", err)
		return 2
	}
	conn, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		fmt.Fprintln(stderr, "toolbox upgrade:", err)
		return 1
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nConnection: Upgrade\r\nUpgrade: echo\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	io.WriteString(conn, req+"\r\n")
	br := bufio.NewReader(conn)
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 101") {
		fmt.Fprintf(stderr, "toolbox upgrade: answer %q %v\n", status, err)
		return 1
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			fmt.Fprintln(stderr, "toolbox upgrade:", err)
			return 1
		}
		if line == "\r\n" {
			break
		}
	}
	for _, l := range fs.Args()[1:] {
		io.WriteString(conn, l+"\n")
		reply, err := br.ReadString('\n')
		if err != nil {
			fmt.Fprintln(stderr, "toolbox upgrade:", err)
			return 1
		}
		io.WriteString(stdout, reply)
	}
	return 0
}

// h2cCmd: toolbox h2c [-H 'Name: value']... URL — two gRPC-shaped calls
// on one cleartext HTTP/2 connection, the first with the headers, the
// second without; prints "N SERVER grpc-status=S proto=P" for each.
func h2cCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("h2c", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var headers headerFlags
	fs.Var(&headers, "H", `a request header for the first call "Name: value" (repeatable)`)
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: toolbox h2c [-H 'Name: value']... URL")
		return 2
	}
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: protocols, TLSClientConfig: &tls.Config{}, MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	for i := 1; i <= 2; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, fs.Arg(0), strings.NewReader("\x00\x00\x00\x00\x00"))
		if err != nil {
			cancel()
			fmt.Fprintln(stderr, "toolbox h2c:", err)
			return 2
		}
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		if i == 1 {
			for _, h := range headers {
				n, v, _ := strings.Cut(h, ":")
				req.Header.Add(strings.TrimSpace(n), strings.TrimSpace(v))
			}
		}
		resp, err := client.Do(req)
		if err != nil {
			cancel()
			fmt.Fprintln(stderr, "toolbox h2c:", err)
			return 1
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		fmt.Fprintf(stdout, "%d %s grpc-status=%s proto=%s\n", i, body, resp.Trailer.Get("Grpc-Status"), resp.Proto)
	}
	return 0
}

// rawCmd: toolbox raw HOST:PORT DATA — sends DATA (\r and \n escapes
// allowed), half-closes, prints what comes back until the server closes.
func rawCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 {
		fmt.Fprintln(stderr, "usage: toolbox raw HOST:PORT DATA")
		return 2
	}
	conn, err := net.DialTimeout("tcp", args[0], 10*time.Second)
	if err != nil {
		fmt.Fprintln(stderr, "toolbox raw:", err)
		return 1
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	data := strings.NewReplacer(`\r`, "\r", `\n`, "\n").Replace(args[1])
	io.WriteString(conn, data)
	conn.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(conn)
	if len(b) == 0 && err != nil {
		fmt.Fprintln(stderr, "toolbox raw:", err)
		return 1
	}
	stdout.Write(b)
	return 0
}
