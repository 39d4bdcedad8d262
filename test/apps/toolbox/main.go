// Command toolbox is a small static multi-tool for the e2e test pods, which
// have no usable shell utilities (Debian's busybox wget segfaults in them).
//
//	toolbox serve [-port 8080]      HTTP: / says hello, /env/NAME, /healthz
//	toolbox get [-timeout 10s] URL  print the body; fail on error or non-2xx
//	toolbox load -n N|-duration D [-c C] [-rate R] URL
//	                                bounded HTTP load; one JSON line of results
//	toolbox upgrade URL LINE...     Upgrade: echo, then send lines, print answers
//	toolbox h2c URL                 two gRPC-shaped calls on one h2c connection
//	toolbox raw HOST:PORT DATA      send non-HTTP bytes, print the first line back
//	toolbox resolve NAME            print NAME's addresses, one a line
//	toolbox udp-echo [-port 8080]   echo UDP datagrams back to their sender
//	toolbox sleep                   wait for SIGTERM or SIGINT, then exit 0
//	toolbox ps                      list processes as "PID CMDLINE"
//	toolbox cat FILE...             print files
package main

import (
	"fmt"
	"io"
	"os"
)

type command func(args []string, stdout, stderr io.Writer) int

var commands = map[string]command{
	"serve":    serveCmd,
	"get":      getCmd,
	"load":     loadCmd,
	"upgrade":  upgradeCmd,
	"h2c":      h2cCmd,
	"raw":      rawCmd,
	"resolve":  resolveCmd,
	"udp-echo": udpEchoCmd,
	"sleep":    sleepCmd,
	"ps":       psCmd,
	"cat":      catCmd,
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return usage(stderr)
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "toolbox: unknown command %q\n", args[0])
		return usage(stderr)
	}
	return cmd(args[1:], stdout, stderr)
}

func usage(w io.Writer) int {
	fmt.Fprintln(w, "usage: toolbox serve|get|load|upgrade|h2c|raw|resolve|udp-echo|sleep|ps|cat [args]")
	return 2
}
