// probe is the Go program the layer's integration tests run under the
// filter, built static (CGO_ENABLED=0) and with cgo. Each subcommand prints
// one line of key=value results.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
)

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: probe CMD ARGS"))
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "http":
		fmt.Println(httpGet(args[0]))
	case "threads":
		n, _ := strconv.Atoi(args[1])
		var wg sync.WaitGroup
		out := make([]string, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runtime.LockOSThread() // a distinct thread per call
				out[i] = httpGet(args[0])
			}()
		}
		wg.Wait()
		fmt.Println(strings.Join(out, "\n"))
	case "child":
		cmd := exec.Command(os.Args[0], append([]string{"http"}, args...)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fail(err)
		}
	case "udp":
		c, err := net.ListenUDP("udp", nil)
		check(err)
		dst, err := net.ResolveUDPAddr("udp", args[0])
		check(err)
		_, err = c.WriteTo([]byte(args[1]), dst)
		check(err)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1500)
		n, from, err := c.ReadFrom(buf)
		check(err)
		fmt.Printf("reply=%s from=%s\n", buf[:n], from)
	case "udpbatch":
		// Two datagrams out, their answers read with recvmmsg (x/net's
		// ReadBatch, as QUIC libraries receive).
		c, err := net.ListenUDP("udp4", nil)
		check(err)
		dst, err := net.ResolveUDPAddr("udp4", args[0])
		check(err)
		for _, s := range []string{"1", "2"} {
			_, err = c.WriteTo([]byte(args[1]+s), dst)
			check(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		p := ipv4.NewPacketConn(c)
		ms := []ipv4.Message{{Buffers: [][]byte{make([]byte, 1500)}}, {Buffers: [][]byte{make([]byte, 1500)}}}
		for got := 0; got < len(ms); {
			n, err := p.ReadBatch(ms[got:], 0)
			check(err)
			for _, m := range ms[got : got+n] {
				fmt.Printf("reply=%s from=%s\n", m.Buffers[0][:m.N], m.Addr)
			}
			got += n
		}
	case "udpconn":
		c, err := net.Dial("udp", args[0])
		check(err)
		_, err = c.Write([]byte(args[1]))
		check(err)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1500)
		n, err := c.Read(buf)
		check(err)
		fmt.Printf("reply=%s peer=%s\n", buf[:n], c.RemoteAddr())
	case "listen":
		l, err := net.Listen("tcp", args[0])
		check(err)
		fmt.Printf("addr=%s\n", l.Addr())
		c, err := l.Accept()
		check(err)
		fmt.Fprintf(c, "hello from probe\n")
		c.Close()
	case "cat":
		b, err := os.ReadFile(args[0])
		if err != nil {
			fmt.Printf("error=%v\n", errnoName(err))
			return
		}
		st, err := os.Stat(args[0])
		check(err)
		fmt.Printf("content=%q size=%d mode=%v\n", b, st.Size(), st.Mode())
	case "stat":
		st, err := os.Stat(args[0])
		if err != nil {
			fmt.Printf("error=%v\n", errnoName(err))
			return
		}
		fmt.Printf("size=%d mode=%v\n", st.Size(), st.Mode())
	case "spawn":
		// A grandchild that outlives this process.
		cmd := exec.Command("sleep", "1000")
		check(cmd.Start())
		fmt.Printf("grandchild=%d\n", cmd.Process.Pid)
	case "waitsig":
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT)
		fmt.Println("ready")
		select {
		case s := <-ch:
			fmt.Printf("got=%v\n", s)
			os.Exit(7)
		case <-time.After(20 * time.Second):
			fmt.Println("timeout")
		}
	case "bench":
		// bench getppid|open|connect ARG N: the mean time of one call.
		n, _ := strconv.Atoi(args[2])
		start := time.Now()
		for range n {
			switch args[0] {
			case "getppid":
				syscall.Getppid()
			case "open":
				fd, err := syscall.Open(args[1], syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
				check(err)
				syscall.Close(fd)
			case "connect":
				c, err := net.Dial("tcp", args[1])
				check(err)
				c.Close()
			}
		}
		fmt.Printf("ns=%d\n", time.Since(start).Nanoseconds()/int64(max(n, 1)))
	case "exit":
		n, _ := strconv.Atoi(args[0])
		os.Exit(n)
	default:
		fail(fmt.Errorf("unknown command %q", os.Args[1]))
	}
}

// httpGet sends an HTTP/1.0 request on a plain connection and reports the
// peer the program sees and the response body.
func httpGet(addr string) string {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "error=" + errnoName(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", addr)
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "error=" + err.Error()
		}
		if line == "\r\n" {
			break
		}
	}
	body, _ := io.ReadAll(r)
	return fmt.Sprintf("peer=%s body=%s", c.RemoteAddr(), strings.TrimSpace(string(body)))
}

func errnoName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ECONNREFUSED:
			return "ECONNREFUSED"
		case syscall.ENOENT:
			return "ENOENT"
		case syscall.ENOSYS:
			return "ENOSYS"
		}
		return fmt.Sprintf("errno %d", int(errno))
	}
	return err.Error()
}

func check(err error) {
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Printf("error=%v\n", err)
	os.Exit(3)
}
