package layer

import (
	"log/slog"

	"github.com/doppel-dev/doppel/layer/seccomp"
)

// Options configures a Supervisor.
type Options struct {
	// Filter says which calls the filters this supervisor serves trap; it
	// is what launchers and the preload server install.
	Filter seccomp.Options
	// Log receives the supervisor's debug and error records; nil discards.
	Log *slog.Logger
}

// Stats counts notifications, for tests and benchmarks.
type Stats struct {
	Notifications uint64 // received
	Continued     uint64 // answered "run it as it is"
	Answered      uint64 // answered by the supervisor (result, errno or fd)
}
