//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/doppel-dev/doppel/agent/freeze"
	"github.com/doppel-dev/doppel/agent/incoming"
	"github.com/doppel-dev/doppel/agent/server"
	"github.com/doppel-dev/doppel/agent/target"
	"github.com/doppel-dev/doppel/internal/buildinfo"
	"github.com/doppel-dev/doppel/protocol"
)

// Exit codes of serve.
const (
	exitOK           = 0
	exitFailed       = 1
	exitUsage        = 2
	exitTargetExited = 3
)

func serve(args []string) int {
	if os.Getenv("GOMAXPROCS") == "" {
		// One P: the agent relays, and a relay's latency is wake-ups.
		// With an idle P, each goroutine it readies (a stream accepted,
		// a dial's socket ready, a frame to write) wakes another thread,
		// often on another CPU, where one P runs it next on this one
		// (docs/agent.md, "Scheduling"). GOMAXPROCS in the environment
		// overrides.
		runtime.GOMAXPROCS(1)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	pid := fs.Int("target-pid", 0, "PID of the target container's process (as the agent sees it)")
	containerID := fs.String("target-container-id", "", "ID of the target container (RUNTIME://ID from the pod status); the agent finds its PID under /proc (needs hostPID)")
	listen := fs.String("listen", "127.0.0.1:0", "TCP address to listen on for helpers")
	var hashes tokenHashes
	fs.Var(&hashes, "token-sha256", "SHA-256 of an accepted session token, 64 hex digits (repeat or comma-separate for several)")
	tokenFile := fs.String("token-file", "", "file of the agent pod's annotations (a downward API volume), read on every hello: each token.doppel.dev/* annotation holds an accepted token's SHA-256")
	startup := fs.Duration("startup-timeout", server.DefaultStartupTimeout, "exit if no session connects within this window")
	redirectBackend := fs.String("redirect-backend", "", `force the incoming redirect's backend: "nftables" or "iptables" (default: nftables, falling back to iptables)`)
	idle := fs.Duration("idle-timeout", server.DefaultIdleTimeout, "exit once the last session has been gone this long")
	keepalive := fs.Duration("keepalive-timeout", protocol.DefaultKeepaliveTimeout, "drop a helper connection silent for this long")
	grace := fs.Duration("resume-grace", protocol.DefaultResumeGrace, "keep a disconnected session this long for the helper to resume it")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "doppel-agent: --log-level: %v\n", err)
		return exitUsage
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	switch {
	case *pid > 0 && *containerID != "":
		fmt.Fprintln(os.Stderr, "doppel-agent: --target-pid and --target-container-id exclude each other")
		return exitUsage
	case *pid <= 0 && *containerID == "":
		fmt.Fprintln(os.Stderr, "doppel-agent: serve needs --target-pid or --target-container-id")
		return exitUsage
	case len(hashes) == 0 && *tokenFile == "":
		fmt.Fprintln(os.Stderr, "doppel-agent: serve needs --token-sha256 or --token-file")
		return exitUsage
	case fs.NArg() > 0:
		fmt.Fprintf(os.Stderr, "doppel-agent: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}

	var accepted func() []protocol.TokenHash
	if *tokenFile != "" {
		tf, err := server.OpenTokenFile(*tokenFile, log)
		if err != nil {
			log.Error("cannot read the token file", "err", err)
			fmt.Fprintf(os.Stderr, "doppel-agent: %v\n", err)
			return exitFailed
		}
		accepted = tf.Hashes
	}

	if *containerID != "" {
		found, err := target.FindContainer("/proc", *containerID)
		if err != nil {
			log.Error("cannot find the target container", "container_id", *containerID, "err", err)
			// Kubernetes shows the end of the log as the termination message.
			fmt.Fprintf(os.Stderr, "doppel-agent: %v\n", err)
			return exitFailed
		}
		*pid = found
		log.Info("found the target container", "container_id", *containerID, "pid", found)
	}
	t, err := target.Open(*pid)
	if err != nil {
		log.Error("cannot attach to the target", "pid", *pid, "err", err)
		return exitFailed
	}
	defer t.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	info := buildinfo.Get()
	log.Info("doppel-agent starting", "version", info.Version, "protocol", protocol.Version, "target_pid", *pid)
	in := incoming.NewManager(t, incoming.Options{Logger: log.With("part", "incoming"), Backend: *redirectBackend})
	defer in.Close()
	pod := server.NewPod(t, in)
	if *containerID != "" {
		// Sessions may freeze the target container (config "pause"); the
		// agent thaws it when it stops, its guardian when it dies.
		fm := freeze.NewManager("/proc", *pid, log.With("part", "freeze"))
		defer fm.Close()
		pod.SetFreezer(fm)
	}
	err = server.Run(ctx, server.Config{
		Listen:           *listen,
		Handler:          pod,
		TokenHashes:      hashes,
		AcceptedTokens:   accepted,
		AgentVersion:     info.Version,
		StartupTimeout:   *startup,
		IdleTimeout:      *idle,
		KeepaliveTimeout: *keepalive,
		ResumeGrace:      *grace,
		Logger:           log,
		TargetExited:     t.Exited(),
		Ready: func(addr net.Addr) {
			// The one line on stdout: whoever started the agent waits for it.
			fmt.Printf("listening on %s\n", addr)
		},
	})
	switch {
	case errors.Is(err, server.ErrTargetExited):
		return exitTargetExited
	case err != nil:
		log.Error("serve failed", "err", err)
		return exitFailed
	}
	return exitOK
}

// tokenHashes is the --token-sha256 flag: one or more hashes.
type tokenHashes []protocol.TokenHash

func (h *tokenHashes) String() string {
	parts := make([]string, len(*h))
	for i, x := range *h {
		parts[i] = x.String()
	}
	return strings.Join(parts, ",")
}

func (h *tokenHashes) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		x, err := protocol.ParseTokenHash(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		*h = append(*h, x)
	}
	return nil
}
