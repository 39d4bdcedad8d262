// Package server is the agent's service: it listens for helpers, serves
// their sessions with a protocol.Server over a Pod, and decides when the
// agent is no longer needed (the startup and idle windows).
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/doppel-dev/doppel/protocol"
)

// Config is what Run needs. Zero durations take the defaults below.
type Config struct {
	// Listen is the TCP address for helpers: loopback in the agent pod,
	// reached through the Kubernetes port-forward.
	Listen  string
	Handler protocol.Handler
	// TokenHashes are accepted for the agent's whole life (--token-sha256).
	TokenHashes []protocol.TokenHash
	// AcceptedTokens, if set, adds the hashes accepted at each hello
	// (--token-file: TokenFile.Hashes). See protocol.Server.
	AcceptedTokens func() []protocol.TokenHash
	AgentVersion   string
	// StartupTimeout: exit when no session came within it after start.
	StartupTimeout time.Duration
	// IdleTimeout: exit when the last session has been gone this long.
	IdleTimeout time.Duration
	// KeepaliveTimeout and ResumeGrace: see protocol.Server.
	KeepaliveTimeout time.Duration
	ResumeGrace      time.Duration
	Logger           *slog.Logger
	// Ready, if set, is called with the listening address once helpers can
	// connect.
	Ready func(net.Addr)
	// TargetExited, if set, ends Run with ErrTargetExited when closed.
	TargetExited <-chan struct{}
}

// Defaults of Config.
const (
	DefaultStartupTimeout = 60 * time.Second
	DefaultIdleTimeout    = 30 * time.Second
)

// ErrTargetExited ends Run when the target process is gone: the pod was
// restarted or deleted, and the agent's view of it is dead.
var ErrTargetExited = errors.New("the target process exited")

// Run serves helpers until ctx is done (nil), the agent's lifetime ends
// (nil), or the target exits (ErrTargetExited).
func Run(ctx context.Context, cfg Config) error {
	if len(cfg.TokenHashes) == 0 && cfg.AcceptedTokens == nil {
		return errors.New("server: no token hash or token file configured")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	startup := orDefault(cfg.StartupTimeout, DefaultStartupTimeout)
	idle := orDefault(cfg.IdleTimeout, DefaultIdleTimeout)

	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	life := newLifetime(startup, idle)
	srv := &protocol.Server{
		Handler:           cfg.Handler,
		TokenHashes:       cfg.TokenHashes,
		AcceptedTokens:    cfg.AcceptedTokens,
		AgentVersion:      cfg.AgentVersion,
		KeepaliveTimeout:  cfg.KeepaliveTimeout,
		ResumeGrace:       cfg.ResumeGrace,
		Logger:            log,
		OnSessionsChanged: life.sessions,
		OnSessionLost:     life.lost,
	}
	serveCtx, stop := context.WithCancel(ctx)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx, l) }()
	log.Info("listening", "addr", l.Addr().String(), "startup_timeout", startup, "idle_timeout", idle)
	if cfg.Ready != nil {
		cfg.Ready(l.Addr())
	}

	var result error
wait:
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping: asked to")
			break wait
		case reason := <-life.expired:
			// A session may have joined just as the window ended: the
			// agent stays for it. Otherwise every later hello is told the
			// agent is going (shutting_down), and the helper starts a new
			// agent rather than join this one.
			if !srv.StopIfIdle() {
				continue
			}
			log.Info("stopping: " + reason)
			break wait
		case <-cfg.TargetExited:
			log.Warn("stopping: the target process exited")
			result = ErrTargetExited
			break wait
		case err := <-served:
			return fmt.Errorf("server: %w", err)
		}
	}
	stop()
	if err := <-served; err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return result
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// lifetime tracks whether the agent is still wanted: its timer runs while
// no session exists, first for the startup window, then for the idle
// window after each last session goes. When the last session was lost (its
// helper vanished without closing it) the window is at most lostIdle: a
// killed helper must not keep its agent pod (and the target's redirects)
// around, while a cleanly ended session keeps the agent for a quick rerun.
type lifetime struct {
	idle    time.Duration
	expired chan string

	mu       sync.Mutex
	timer    *time.Timer
	gen      int // invalidates a timer that fired while being replaced
	wasLost  bool
	lostIdle time.Duration
}

// lostIdle bounds the idle window after a lost session: resume grace (15 s)
// + 5 s + the Job's TTL and pod deletion stay within the 30 s promised
// for a SIGKILLed helper.
const lostIdle = 5 * time.Second

func newLifetime(startup, idle time.Duration) *lifetime {
	l := &lifetime{idle: idle, expired: make(chan string, 1), lostIdle: min(idle, lostIdle)}
	l.arm(startup, fmt.Sprintf("no session within the startup window of %s", startup))
	return l
}

func (l *lifetime) arm(d time.Duration, reason string) {
	l.gen++
	gen := l.gen
	l.timer = time.AfterFunc(d, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if gen == l.gen {
			select {
			case l.expired <- reason:
			default:
			}
		}
	})
}

// lost is protocol.Server's OnSessionLost.
func (l *lifetime) lost(string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.wasLost = true
}

// sessions is protocol.Server's OnSessionsChanged.
func (l *lifetime) sessions(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timer.Stop()
	l.gen++
	lost := l.wasLost
	l.wasLost = false
	switch {
	case n > 0:
	case lost:
		l.arm(l.lostIdle, fmt.Sprintf("the last session was lost (its helper is gone) and none came for %s", l.lostIdle))
	default:
		l.arm(l.idle, fmt.Sprintf("no session for the idle window of %s", l.idle))
	}
}
