package session

import (
	"strings"
	"testing"

	"github.com/doppel-dev/doppel/protocol"
)

// The agent's reason for dropping a mirrored connection reaches the user
// as what to do about it; aborts the user need not hear of stay quiet.
func TestMirrorDropNotices(t *testing.T) {
	for _, tc := range []struct {
		reason, want string
	}{
		{protocol.ReasonMirrorOverflow, "reads its copy too slowly"},
		{protocol.ReasonMirrorIncomplete, "could not capture all of their bytes"},
		{"", ""},
		{"a reason of a newer agent", ""},
	} {
		var got []Notice
		in := &incoming{notify: func(n Notice) { got = append(got, n) }, dropped: map[uint16]int{}}
		in.aborted(protocol.IncomingHeader{Port: 8080, Reason: tc.reason})
		switch {
		case tc.want == "" && len(got) != 0:
			t.Errorf("reason %q: told the user %q", tc.reason, got[0].Message)
		case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0].Message, tc.want) || !strings.Contains(got[0].Message, "port 8080: 1 mirrored connections dropped")):
			t.Errorf("reason %q: notices %+v, want one saying %q", tc.reason, got, tc.want)
		}
	}
}
