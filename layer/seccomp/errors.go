package seccomp

import (
	"errors"
	"fmt"
)

// ErrNotSupported is returned where seccomp user notification does not exist:
// other operating systems and architectures other than x86-64.
var ErrNotSupported = errors.New("seccomp: user notification is only supported on linux/amd64")

// ErrKernelTooOld says the running kernel lacks a feature the filter needs.
type ErrKernelTooOld struct {
	Have string // the running kernel's release
	Need string // minimum version and the feature that needs it
}

func (e ErrKernelTooOld) Error() string {
	return fmt.Sprintf("seccomp: kernel %s is too old: need %s (%s or newer recommended)", e.Have, e.Need, Recommended)
}

// Recommended is the kernel with every feature the layer uses
// (SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV).
const Recommended = "5.19"

// feature is a kernel feature and the release that added it.
type feature struct {
	major, minor int
	name         string
}

func (f feature) String() string { return fmt.Sprintf("%d.%d (%s)", f.major, f.minor, f.name) }

// Kernel features, oldest first.
var (
	featUserNotif       = feature{5, 0, "SECCOMP_RET_USER_NOTIF"}
	featContinue        = feature{5, 5, "SECCOMP_USER_NOTIF_FLAG_CONTINUE"}
	featPidfdGetfd      = feature{5, 6, "pidfd_getfd"}
	featTsyncESRCH      = feature{5, 7, "SECCOMP_FILTER_FLAG_TSYNC_ESRCH"}
	featAddfdSend       = feature{5, 14, "SECCOMP_ADDFD_FLAG_SEND"}
	featWaitKillable    = feature{5, 19, "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"}
	requiredForNetwork  = []feature{featUserNotif, featContinue, featPidfdGetfd, featTsyncESRCH}
	requiredForFiles    = []feature{featAddfdSend}
	recommendedFeatures = []feature{featWaitKillable}
)

// checkRelease compares a kernel release ("6.1.0-18-amd64") with what o
// needs. It returns the missing recommended features separately: the filter
// still works without them, with the caveat each one names.
func checkRelease(release string, o Options) (missingRecommended []string, err error) {
	var major, minor int
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err != nil {
		return nil, fmt.Errorf("seccomp: cannot parse kernel release %q: %w", release, err)
	}
	has := func(f feature) bool { return major > f.major || major == f.major && minor >= f.minor }
	need := requiredForNetwork
	if o.Files {
		need = append(append([]feature{}, need...), requiredForFiles...)
	}
	for n := len(need) - 1; n >= 0; n-- {
		if !has(need[n]) {
			// Name the newest missing feature: it is the floor.
			return nil, ErrKernelTooOld{Have: release, Need: need[n].String()}
		}
	}
	for _, f := range recommendedFeatures {
		if !has(f) {
			missingRecommended = append(missingRecommended, f.String())
		}
	}
	return missingRecommended, nil
}
