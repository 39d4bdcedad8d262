// Command doppel-agent runs in the cluster, inside the target pod's
// namespaces, and serves doppel sessions: it dials, resolves, reads files and
// env, and redirects incoming traffic on their behalf.
//
//	doppel-agent -version
//	doppel-agent serve --target-pid PID --listen 127.0.0.1:0 --token-sha256 HEX
//	doppel-agent serve --target-container-id containerd://ID --listen 127.0.0.1:PORT --token-sha256 HEX --token-file /doppel/annotations
//
// serve prints "listening on ADDR" on stdout once helpers can connect and
// logs to stderr.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/doppel-dev/doppel/agent/freeze"
	"github.com/doppel-dev/doppel/agent/incoming/redirect"
	"github.com/doppel-dev/doppel/internal/buildinfo"
)

func main() {
	// The iptables redirect's guardian is this binary, re-executed.
	redirect.MaybeRunGuardian()
	// So is the freeze's guardian, which thaws the target.
	freeze.MaybeRunGuardian()
	version := flag.Bool("version", false, "print the version and exit")
	flag.Usage = usage
	flag.Parse()
	if *version {
		fmt.Printf("doppel-agent %s\n", buildinfo.Get())
		return
	}
	switch flag.Arg(0) {
	case "serve":
		os.Exit(serve(flag.Args()[1:]))
	case "thaw":
		os.Exit(thaw(flag.Args()[1:]))
	case "install-self":
		os.Exit(installSelf(flag.Args()[1:]))
	case "hold":
		os.Exit(hold(flag.Args()[1:]))
	case "":
		usage()
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "doppel-agent: unknown command %q\n", flag.Arg(0))
		usage()
		os.Exit(2)
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, `usage:
  doppel-agent -version
  doppel-agent serve --target-pid PID --token-sha256 HEX [--listen 127.0.0.1:0] [options]
  doppel-agent serve --target-container-id RUNTIME://ID --token-sha256 HEX [--token-file PATH] [options]
  doppel-agent thaw --target-container-id RUNTIME://ID

Run "doppel-agent serve -h" for the serve options.
`)
}
