// Package buildinfo carries the version stamped into doppel's binaries at
// link time (-X), with fallbacks from the Go build info for `go run` builds.
package buildinfo

import (
	"fmt"
	"runtime/debug"

	"github.com/doppel-dev/doppel/protocol"
)

// Set by the Makefile with -ldflags "-X ...".
var (
	Version = "dev"
	Commit  = ""
)

// Info describes one build of a doppel binary.
type Info struct {
	Version  string `json:"version"`
	Commit   string `json:"commit"`
	Protocol int    `json:"protocol"`
	Go       string `json:"go"`
}

// Get returns the stamped build info, filling the commit from the VCS
// metadata Go records when the linker did not set it.
func Get() Info {
	info := Info{Version: Version, Commit: Commit, Protocol: protocol.Version}
	if bi, ok := debug.ReadBuildInfo(); ok {
		info.Go = bi.GoVersion
		if info.Commit == "" {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					info.Commit = s.Value
				}
			}
		}
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}

// String is the one-line form `doppel version` prints.
func (i Info) String() string {
	return fmt.Sprintf("%s (commit %s, protocol %d, %s)", i.Version, i.Commit, i.Protocol, i.Go)
}
