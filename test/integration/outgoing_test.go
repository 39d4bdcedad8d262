//go:build integration && linux

package integration

import (
	"bufio"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// earlyConnectClient connects four times to a pod server that takes two
// connections and then stops listening, and prints what each connect and
// first read saw.
const earlyConnectClient = `
import errno, os, socket, time
ip, port = os.environ["POD_IP"], int(os.environ["POD_PORT"])
for i in range(4):
    s = socket.socket()
    s.settimeout(10)
    try:
        s.connect((ip, port))
        s.sendall(b"hi\n")
        got = s.recv(100)
        print("conn%d=%s" % (i, got.decode().strip() or "eof"))
    except OSError as e:
        print("conn%d=%s" % (i, errno.errorcode.get(e.errno, str(e))))
    s.close()
    if i == 1:
        time.sleep(1) # the server stops listening
`

// earlyConnectServer answers two connections in the pod, then closes its
// listener.
const earlyConnectServer = `
import socket, sys
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", int(sys.argv[1])))
l.listen()
print("listening", flush=True)
for i in range(2):
    c, _ = l.accept()
    c.recv(100)
    c.sendall(b"answer%d\n" % i)
    c.close()
l.close()
`

// A destination the pod reached a moment ago is connected early: the
// second connect is answered as the first; once the pod refuses, the early
// connect's first read sees the refusal as a reset, and the next connect
// waits again and is refused. With early_connect off, every refusal is
// ECONNREFUSED at connect.
func TestEarlyConnect(t *testing.T) {
	s := need(t)
	for _, c := range []struct {
		config string
		third  string
	}{
		{"", "ECONNRESET"},
		{"feature:\n  network:\n    outgoing:\n      early_connect: false\n", "ECONNREFUSED"},
	} {
		const port = 7013
		server := exec.Command("ip", "netns", "exec", s.pod.NS, "python3", "-c", earlyConnectServer, fmt.Sprint(port))
		out, err := server.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := server.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || strings.TrimSpace(line) != "listening" {
			server.Process.Kill() // the server this test started
			server.Wait()
			t.Fatalf("pod server: %q %v", line, err)
		}
		res := s.doppelExec(t, run{Config: c.config, Cmd: []string{"python3", "-c", earlyConnectClient},
			Env: []string{"POD_IP=" + s.pod.IP, fmt.Sprintf("POD_PORT=%d", port)}, Timeout: time.Minute})
		server.Process.Kill()
		server.Wait()
		want := map[string]string{"conn0": "answer0", "conn1": "answer1", "conn2": c.third, "conn3": "ECONNREFUSED"}
		for k, v := range want {
			if res.Values[k] != v {
				t.Errorf("config %q: %s=%q, want %q", c.config, k, res.Values[k], v)
			}
		}
		if t.Failed() {
			logResult(t, res)
		}
	}
}
