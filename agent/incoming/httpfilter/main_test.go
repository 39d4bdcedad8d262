package httpfilter

import (
	"os"
	"testing"
	"time"

	"github.com/dlclark/regexp2"
)

// TestMain makes regexp2's timeout clock tick every millisecond (100 ms by
// default), so that the fuzzer's catastrophic patterns give up in a few
// milliseconds instead of a tenth of a second each.
func TestMain(m *testing.M) {
	regexp2.SetTimeoutCheckPeriod(time.Millisecond)
	os.Exit(m.Run())
}
