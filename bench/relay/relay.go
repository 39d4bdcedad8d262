package main

// The relay runs in its own process (this binary re-executed with -role relay),
// so that its CPU use can be measured separately and the Go scheduler of the
// client/server does not interfere with it.
//
// Protocol with the parent: relay prints "PORT <n>" on stdout once listening,
// then "READY" after each accepted connection is fully set up (peer dialled,
// sockets in the sockmap). The parent writes "RUSAGE" lines on stdin and gets
// "RUSAGE <user-ns> <sys-ns>" back. Closing stdin ends the relay.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

var outMu sync.Mutex

func say(format string, a ...any) {
	outMu.Lock()
	fmt.Fprintf(os.Stdout, format+"\n", a...)
	outMu.Unlock()
}

func rlog(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "[relay %s] "+format+"\n", append([]any{*flRelayMode}, a...)...)
}

func runRelay() {
	go func() { time.Sleep(*flRelayMax); rlog("max lifetime reached, exiting"); os.Exit(3) }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		say("ERR %v", err)
		os.Exit(1)
	}
	var br *bpfRelay
	if *flRelayMode == "sockmap" {
		br, err = newBPFRelay(*flAttach)
		if err != nil {
			say("ERR %v", err)
			os.Exit(1)
		}
	}
	say("PORT %d", ln.Addr().(*net.TCPAddr).Port)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if sc.Text() == "RUSAGE" {
				var ru unix.Rusage
				unix.Getrusage(unix.RUSAGE_SELF, &ru)
				say("RUSAGE %d %d", ru.Utime.Nano(), ru.Stime.Nano())
			}
		}
		os.Exit(0)
	}()
	for {
		a, err := ln.Accept()
		if err != nil {
			rlog("accept: %v", err)
			os.Exit(1)
		}
		go relayConn(a.(*net.TCPConn), br)
	}
}

type readerOnly struct{ io.Reader }
type writerOnly struct{ io.Writer }

func relayConn(a *net.TCPConn, br *bpfRelay) {
	bc, err := net.Dial("tcp", *flTarget)
	if err != nil {
		rlog("dial target: %v", err)
		a.Close()
		return
	}
	b := bc.(*net.TCPConn)
	a.SetNoDelay(true)
	b.SetNoDelay(true)
	switch *flRelayMode {
	case "go-relay", "go-copy":
		pump := func(dst, src *net.TCPConn) {
			if *flRelayMode == "go-relay" {
				io.Copy(dst, src) // *net.TCPConn -> *net.TCPConn: Go uses splice(2) internally
			} else {
				io.CopyBuffer(writerOnly{dst}, readerOnly{src}, make([]byte, 32<<10)) // forced read/write copy
			}
			dst.CloseWrite()
		}
		say("READY")
		done := make(chan struct{})
		go func() { pump(b, a); close(done) }()
		pump(a, b)
		<-done
		a.Close()
		b.Close()
	case "splice-relay":
		fa, fb := rawFD(a), rawFD(b)
		say("READY")
		done := make(chan struct{})
		go func() { spliceLoop(fb, fa); close(done) }()
		spliceLoop(fa, fb)
		<-done
		unix.Close(fa)
		unix.Close(fb)
	case "sockmap":
		fa, fb := rawFD(a), rawFD(b)
		time.Sleep(*flInsertDelay)
		baseA, baseB := tcpCounters(fa), tcpCounters(fb)
		pair, err := br.add(fa, fb)
		if err != nil {
			rlog("sockmap add: %v", err)
			unix.Close(fa)
			unix.Close(fb)
			return
		}
		say("READY")
		done := make(chan struct{})
		go func() { sockmapWatch(fa, fb, baseA, baseB, "A(client side)->B"); close(done) }()
		sockmapWatch(fb, fa, baseB, baseA, "B(server side)->A")
		<-done
		br.remove(pair, fa, fb)
		unix.Close(fa)
		unix.Close(fb)
	}
}

// rawFD returns a blocking duplicate of the connection's socket and closes the net.Conn.
func rawFD(c *net.TCPConn) int {
	sc, _ := c.SyscallConn()
	var nfd int
	var derr error
	sc.Control(func(fd uintptr) { nfd, derr = unix.Dup(int(fd)) })
	if derr != nil {
		panic(derr)
	}
	c.Close()
	unix.SetNonblock(nfd, false)
	return nfd
}

func spliceLoop(src, dst int) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		panic(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	unix.FcntlInt(uintptr(p[0]), unix.F_SETPIPE_SZ, 1<<20)
	for {
		n, err := unix.Splice(src, nil, p[1], nil, 1<<20, unix.SPLICE_F_MOVE)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			rlog("splice in: %v", err)
			break
		}
		if n == 0 {
			break
		}
		for n > 0 {
			m, err := unix.Splice(p[0], nil, dst, nil, int(n), unix.SPLICE_F_MOVE)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				rlog("splice out: %v", err)
				return
			}
			n -= m
		}
	}
	unix.Shutdown(dst, unix.SHUT_WR)
}

type tcpCnt struct{ recv, fwd uint64 } // bytes received on the socket; bytes accepted for sending (acked + SIOCOUTQ)

func tcpCounters(fd int) tcpCnt {
	ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return tcpCnt{}
	}
	outq, _ := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	return tcpCnt{recv: ti.Bytes_received, fwd: ti.Bytes_acked + uint64(outq)}
}

var unexpectedBytes atomic.Int64

// sockmapWatch blocks in read(2) on src (which is in the sockmap; all its data is
// redirected by BPF, so read only returns at EOF/error, or with data the program
// passed instead of redirecting). At EOF it propagates the half-close to dst
// according to -fin.
func sockmapWatch(src, dst int, baseSrc, baseDst tcpCnt, dir string) {
	buf := make([]byte, 64<<10)
	var wakeups, eagain int
	defer func() {
		if *flVerbose {
			rlog("%s: watcher wakeups=%d EAGAIN=%d", dir, wakeups, eagain)
		}
	}()
	first := true
	for {
		if *flWatch == "rdhup" && first && *flKick {
			// One non-blocking recv right after insertion: flushes data that was queued on the
			// socket before it entered the sockmap through the verdict program (see -experiments early).
			first = false
			goto recv
		}
		if *flWatch == "poll" || *flWatch == "rdhup" {
			// poll: wait for readable or peer-FIN. The verdict data_ready path still calls the
			// socket's original data_ready for every skb, so POLLIN waiters are woken (in the
			// kernel) once per skb. rdhup: ask only for POLLRDHUP; pollwake() filters the
			// per-skb EPOLLIN wakeups by key, the FIN's state_change wakeup has no key.
			ev := int16(unix.POLLIN | unix.POLLRDHUP)
			if *flWatch == "rdhup" {
				ev = unix.POLLRDHUP
			}
			pfd := []unix.PollFd{{Fd: int32(src), Events: ev}}
			if _, err := unix.Poll(pfd, -1); err != nil && err != unix.EINTR {
				rlog("%s: poll %v", dir, err)
				break
			}
			wakeups++
		}
	recv:
		flags := 0
		if *flWatch != "read" {
			flags = unix.MSG_DONTWAIT
		}
		n, _, err := unix.Recvfrom(src, buf, flags)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			// tcp_bpf_recvmsg returns -EAGAIN even on a blocking socket when it is woken
			// (e.g. by a write-space wakeup) and no data was passed to user space.
			eagain++
			continue
		}
		if err != nil {
			rlog("%s: read error %v", dir, err)
			break
		}
		if n > 0 {
			unexpectedBytes.Add(int64(n))
			rlog("%s: UNEXPECTED %d bytes reached user space (not redirected)", dir, n)
			continue
		}
		// n == 0: EOF
		t0 := time.Now()
		s, d := tcpCounters(src), tcpCounters(dst)
		want := s.recv - baseSrc.recv - 1 // -1: FIN counted in bytes_received
		got := d.fwd - baseDst.fwd
		if *flVerbose {
			rlog("%s: read()=0 (EOF). data received on src=%d, handed to dst socket so far=%d (still in psock backlog: %d)", dir, want, got, int64(want)-int64(got))
		}
		switch *flFin {
		case "drain":
			for got < want && time.Since(t0) < 5*time.Second {
				time.Sleep(100 * time.Microsecond)
				got = tcpCounters(dst).fwd - baseDst.fwd
			}
			if *flVerbose {
				rlog("%s: drained after %v (handed=%d want=%d)", dir, time.Since(t0), got, want)
			}
			unix.Shutdown(dst, unix.SHUT_WR)
		case "immediate":
			unix.Shutdown(dst, unix.SHUT_WR)
		case "none":
		}
		break
	}
}
