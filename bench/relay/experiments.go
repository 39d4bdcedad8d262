package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// expFin: sockmap relay, C->S (T) and S->C (D) transfers of several sizes
// followed by a half-close, with each -fin policy. Reports bytes lost.
func expFin() {
	sizes := []int64{4 << 10, 256 << 10, 4 << 20, 64 << 20, 256 << 20}
	for _, pol := range []string{"immediate", "drain", "none"} {
		r, err := startRelay("sockmap", "-fin", pol, "-v=true")
		if err != nil {
			fmt.Println("fin:", err)
			return
		}
		fmt.Printf("\n## fin policy %q (attach=%s)\n", pol, *flAttach)
		for _, sz := range sizes {
			// C -> S
			c, err := dial("sockmap", r, true)
			if err != nil {
				fmt.Println(err)
				continue
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			el, got, err := throughput(c, sz)
			c.Close()
			fmt.Printf("C->S %9d B: S received %9d B before EOF (lost %d) in %v err=%v\n", sz, got, sz-got, el.Round(time.Microsecond), err)
			time.Sleep(50 * time.Millisecond)
			// S -> C
			c, err = dial("sockmap", r, true)
			if err != nil {
				fmt.Println(err)
				continue
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			var hdr [9]byte
			hdr[0] = 'D'
			binary.LittleEndian.PutUint64(hdr[1:], uint64(sz))
			t0 := time.Now()
			c.Write(hdr[:])
			n, err := io.Copy(io.Discard, c)
			c.Close()
			fmt.Printf("S->C %9d B: C received %9d B before EOF (lost %d) in %v err=%v\n", sz, n, sz-n, time.Since(t0).Round(time.Microsecond), err)
			time.Sleep(50 * time.Millisecond)
		}
		r.stop()
	}
}

// expEarly: the client sends its first request before the relay has put the
// sockets into the sockmap.
func expEarly() {
	r, err := startRelay("sockmap", "-v=true", "-insert-delay", "50ms")
	if err != nil {
		fmt.Println("early:", err)
		return
	}
	defer r.stop()
	c, err := dial("sockmap", r, false)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	req := make([]byte, *flReq)
	c.Write(append([]byte{'P'}, req...))
	<-r.ready
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp := make([]byte, 2**flResp)
	n, err := io.ReadAtLeast(c, resp, *flResp)
	fmt.Printf("early: request sent >=50ms before sockmap insertion -> response bytes within 3s: %d (err=%v)\n", n, err)
	c.Write(req)
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	m, err := io.ReadAtLeast(c, resp[n:], 2**flResp-n)
	fmt.Printf("early: after a 2nd request (sent after insertion): total response bytes %d (err=%v)\n", n+m, err)
}

// expCaps runs -role captest under various capability sets (setpriv).
func expCaps() {
	exe, _ := os.Executable()
	dir, err := os.MkdirTemp("", "relay-captest")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755) // uid 65534 runs the copy
	bin := filepath.Join(dir, "captest")
	data, err := os.ReadFile(exe)
	if err != nil {
		fmt.Println(err)
		return
	}
	os.WriteFile(bin, data, 0o755)
	variants := []struct{ name, args string }{
		{"root, all caps", ""},
		{"root without CAP_BPF", "--bounding-set=-bpf --inh-caps=-bpf"},
		{"root without CAP_NET_ADMIN", "--bounding-set=-net_admin --inh-caps=-net_admin"},
		{"root without CAP_SYS_ADMIN", "--bounding-set=-sys_admin --inh-caps=-sys_admin"},
		{"root without CAP_SYS_ADMIN,CAP_BPF", "--bounding-set=-sys_admin,-bpf --inh-caps=-sys_admin,-bpf"},
		{"root without CAP_SYS_ADMIN,CAP_NET_ADMIN", "--bounding-set=-sys_admin,-net_admin --inh-caps=-sys_admin,-net_admin"},
		{"uid 65534 with only CAP_BPF+CAP_NET_ADMIN", "--reuid=65534 --regid=65534 --clear-groups --inh-caps=-all,+bpf,+net_admin --ambient-caps=-all,+bpf,+net_admin"},
		{"uid 65534 with only CAP_BPF", "--reuid=65534 --regid=65534 --clear-groups --inh-caps=-all,+bpf --ambient-caps=-all,+bpf"},
		{"uid 65534 with only CAP_NET_ADMIN", "--reuid=65534 --regid=65534 --clear-groups --inh-caps=-all,+net_admin --ambient-caps=-all,+net_admin"},
		{"uid 65534 no caps", "--reuid=65534 --regid=65534 --clear-groups --inh-caps=-all"},
	}
	for _, v := range variants {
		var cmd *exec.Cmd
		if v.args == "" {
			cmd = exec.Command(bin, "-role", "captest", "-attach", *flAttach)
		} else {
			cmd = exec.Command("setpriv", append(strings.Fields(v.args), bin, "-role", "captest", "-attach", *flAttach)...)
		}
		out, err := cmd.CombinedOutput()
		res := strings.TrimSpace(string(out))
		if err != nil && res == "" {
			res = err.Error()
		}
		fmt.Printf("caps: %-45s -> %s\n", v.name, res)
	}
}

func runCaptest() {
	caps, _ := os.ReadFile("/proc/self/status")
	eff := ""
	for _, l := range strings.Split(string(caps), "\n") {
		if strings.HasPrefix(l, "CapEff:") {
			eff = strings.TrimSpace(strings.TrimPrefix(l, "CapEff:"))
		}
	}
	br, err := newBPFRelay(*flAttach)
	if err != nil {
		fmt.Printf("[CapEff %s] FAIL: %v\n", eff, err)
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Printf("FAIL listen: %v\n", err)
		return
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		fmt.Printf("FAIL dial: %v\n", err)
		return
	}
	a, _ := ln.Accept()
	fa, fb := rawFD(a.(*net.TCPConn)), rawFD(c.(*net.TCPConn))
	if _, err := br.add(fa, fb); err != nil {
		fmt.Printf("[CapEff %s] FAIL add: %v\n", eff, err)
		return
	}
	fmt.Printf("[CapEff %s] OK (maps created, program loaded+attached, sockets inserted)\n", eff)
}

func memAvailable() int64 {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "MemAvailable:") {
			f := strings.Fields(l)
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v << 10
		}
	}
	return 0
}

// expBackpressure: S sends 512 MiB through the relay to a client that does not
// read for 2 s. With a user-space relay S blocks once the socket buffers are
// full; the question is whether the sockmap relay has any backpressure.
func expBackpressure(mode string) {
	const total = 512 << 20
	r, err := startRelay(mode)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.stop()
	c, err := dial(mode, r, true)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	m0 := memAvailable()
	s0 := serverSent.Load()
	var hdr [9]byte
	hdr[0] = 'D'
	binary.LittleEndian.PutUint64(hdr[1:], total)
	c.Write(hdr[:])
	time.Sleep(2 * time.Second)
	sent := serverSent.Load() - s0
	m1 := memAvailable()
	n, err := io.Copy(io.Discard, c)
	fmt.Printf("backpressure %-8s: client not reading for 2s -> S had written %d MiB of %d MiB; MemAvailable dropped by %d MiB; afterwards C read %d MiB (err=%v)\n",
		mode, sent>>20, total>>20, (m0-m1)>>20, n>>20, err)
}
