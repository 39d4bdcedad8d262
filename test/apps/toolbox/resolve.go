package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

func resolveCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: toolbox resolve NAME")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ips, err := resolve(ctx, net.DefaultResolver, args[0])
	if err != nil {
		fmt.Fprintf(stderr, "toolbox resolve: %v\n", err)
		return 1
	}
	for _, ip := range ips {
		fmt.Fprintln(stdout, ip)
	}
	return 0
}

type ipLookuper interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// resolve returns name's addresses. The binary is built without cgo, so
// this is Go's own resolver reading /etc/resolv.conf and /etc/hosts, as the
// pod sees them.
func resolve(ctx context.Context, r ipLookuper, name string) ([]string, error) {
	addrs, err := r.LookupIPAddr(ctx, name)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, errors.New(name + ": no addresses")
	}
	ips := make([]string, len(addrs))
	for i, a := range addrs {
		ips[i] = a.String()
	}
	return ips, nil
}
