// Command doppel-agent runs in the cluster, inside the target pod's
// namespaces, and serves doppel sessions: it dials, resolves, reads files and
// env, and redirects incoming traffic on their behalf.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/doppel-dev/doppel/internal/buildinfo"
)

func main() {
	version := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *version {
		fmt.Printf("doppel-agent %s\n", buildinfo.Get())
		return
	}
	fmt.Fprintln(os.Stderr, "doppel-agent: no session work yet: run with -version")
	os.Exit(2)
}
