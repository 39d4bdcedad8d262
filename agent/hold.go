package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// installSelf copies this binary to path (the copy pod's init container
// puts it on a shared volume; docs/pause.md).
func installSelf(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "doppel-agent: install-self PATH")
		return 2
	}
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		fmt.Fprintln(os.Stderr, "doppel-agent:", err)
		return 1
	}
	defer src.Close()
	dst, err := os.OpenFile(args[0], os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err == nil {
		_, err = io.Copy(dst, src)
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "doppel-agent:", err)
		return 1
	}
	return 0
}

// hold is the process of a copy pod's target container: it keeps the
// container (its network, files and environment, which sessions use)
// without running the application, until SIGTERM.
func hold([]string) int {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return 0
}
