//go:build integration && linux

package layer_test

import (
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/doppel-dev/doppel/layer/seccomp"
)

// The benchmarks run the probe's timing loop once with b.N iterations, bare
// and under the layer, and report the probe's own ns per call ("ns/call"):
// the launch itself is not in the figure.

func probeNs(b *testing.B, out string) {
	b.Helper()
	_, v, ok := strings.Cut(out, "ns=")
	if !ok {
		b.Fatalf("no timing in %q", out)
	}
	ns, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(ns), "ns/call")
}

func benchProbe(b *testing.B, layered bool, o seccomp.Options, h *testHandler, args ...string) {
	probe := buildProbe(b, "static")
	argv := append([]string{probe, "bench"}, append(args, strconv.Itoa(b.N))...)
	b.ResetTimer()
	if !layered {
		out, err := exec.Command(argv[0], argv[1:]...).Output()
		if err != nil {
			b.Fatal(err)
		}
		probeNs(b, string(out))
		return
	}
	r := run(b, h, runOpts{filter: o}, argv...)
	probeNs(b, r.stdout)
}

func BenchmarkUntrappedSyscall(b *testing.B) {
	b.Run("bare", func(b *testing.B) { benchProbe(b, false, seccomp.Options{}, nil, "getppid", "-") })
	b.Run("filtered", func(b *testing.B) {
		benchProbe(b, true, seccomp.Options{UDP: true, Files: true}, newHandler(), "getppid", "-")
	})
}

func BenchmarkOpenat(b *testing.B) {
	const path = "/etc/hostname"
	b.Run("bare", func(b *testing.B) { benchProbe(b, false, seccomp.Options{}, nil, "open", path) })
	b.Run("continue", func(b *testing.B) { benchProbe(b, true, seccomp.Options{Files: true}, newHandler(), "open", path) })
	b.Run("served", func(b *testing.B) {
		h := newHandler()
		h.files[path] = "pod\n"
		benchProbe(b, true, seccomp.Options{Files: true}, h, "open", path)
	})
}

func BenchmarkConnect(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	b.Run("bare-loopback", func(b *testing.B) { benchProbe(b, false, seccomp.Options{}, nil, "connect", l.Addr().String()) })
	b.Run("passthrough-loopback", func(b *testing.B) {
		benchProbe(b, true, seccomp.Options{}, newHandler(), "connect", l.Addr().String())
	})
	b.Run("redirected", func(b *testing.B) {
		h := newHandler()
		h.redirect(remoteHTTP, mustAddrPort(l.Addr()))
		benchProbe(b, true, seccomp.Options{}, h, "connect", remoteHTTP.String())
	})
}
