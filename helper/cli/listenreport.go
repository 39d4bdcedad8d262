package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"github.com/doppel-dev/doppel/helper/session"
)

// listenReport writes the ports the command listens on to a file, one JSON
// object a line, as they are discovered (hidden `doppel exec --report-listen`,
// for tests and scripts):
//
//	{"pid":123,"proto":"tcp","requested":"[::]:8080","actual":"[::]:8080"}
//
// requested is what the program asked for and keeps seeing; actual differs
// when the port was taken locally and the layer bound another one.
type listenReport struct {
	mu sync.Mutex
	f  *os.File
}

type listenRecord struct {
	PID       int    `json:"pid"`
	Proto     string `json:"proto"`
	Requested string `json:"requested"`
	Actual    string `json:"actual"`
}

func newListenReport(path string) (*listenReport, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("--report-listen: %w", err)
	}
	return &listenReport{f: f}, nil
}

func (r *listenReport) add(p session.ListenPort) {
	line, err := json.Marshal(listenRecord{PID: p.PID, Proto: p.Proto, Requested: p.Requested.String(), Actual: p.Actual.String()})
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f != nil {
		// One write per line: readers never see half a record.
		r.f.Write(append(line, '\n'))
	}
}

func (r *listenReport) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
