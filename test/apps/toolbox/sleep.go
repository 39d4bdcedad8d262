package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// sleepReady, when set, is called once the signal handler is in place; the
// test uses it to know when sending SIGTERM is safe.
var sleepReady func()

// sleepCmd keeps a pod's container alive until the pod is deleted. As PID 1
// a process gets no default signal handling, so SIGTERM must be caught
// explicitly or deletion waits out the whole grace period.
func sleepCmd(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if sleepReady != nil {
		sleepReady()
	}
	<-ctx.Done()
	return 0
}
