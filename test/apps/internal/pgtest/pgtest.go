// Package pgtest runs throw-away PostgreSQL servers for tests, from Debian's
// postgresql-15 binaries, listening only on a unix socket in a temp dir.
//
// Postgres refuses to run as root, so when the test runs as root the server
// runs as the "postgres" user that the Debian package creates.
package pgtest

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/lib/pq" // registers the "postgres" driver
)

// DefaultBin is where Debian's postgresql-15 puts initdb and postgres.
const DefaultBin = "/usr/lib/postgresql/15/bin"

const installHint = "apt-get install postgresql-15"

// Bin returns the directory holding initdb and postgres ($PG_BIN, else
// DefaultBin). A missing server is a broken test machine, so it fails.
func Bin(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("PG_BIN")
	if dir == "" {
		dir = DefaultBin
	}
	for _, name := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatalf("PostgreSQL server binaries are needed for this test: %v; %s", err, installHint)
		}
	}
	return dir
}

// Owner is the account Postgres runs as.
type Owner struct {
	UID, GID int
	// Cred is nil when the test already runs as that account.
	Cred *syscall.Credential
}

// RunAs returns the current user, or the "postgres" user when running as root.
func RunAs(t testing.TB) Owner {
	t.Helper()
	if os.Geteuid() != 0 {
		return Owner{UID: os.Geteuid(), GID: os.Getegid()}
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("running as root, so Postgres must run as user postgres: %v; %s creates it", err, installHint)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return Owner{UID: uid, GID: gid, Cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
}

// Command prepares name to run as o.
func (o Owner) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	if o.Cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.Cred}
	}
	return cmd
}

// Dir returns a fresh temp dir owned by o. Its socket path must fit in
// sun_path (108 bytes), which a long $TMPDIR can break.
func (o Owner) Dir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	// t.TempDir's parent is 0700 and root's; o only needs to pass through it.
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, o.UID, o.GID); err != nil {
		t.Fatal(err)
	}
	if n := len(dir) + len("/.s.PGSQL.65535"); n > 107 {
		t.Fatalf("temp dir %s is too long for a unix socket path; use a shorter TMPDIR", dir)
	}
	return dir
}

// LogBuffer collects a process's output; safe for concurrent writes.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Server is a running throw-away Postgres.
type Server struct {
	SocketDir string
	Port      int
	User      string
}

// DSN returns a lib/pq connection string for database db over the socket.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", s.SocketDir, s.Port, s.User, db)
}

// Start initialises a cluster (superuser "postgres", trust auth) and starts
// a server on a unix socket only; it is stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Bin(t)
	o := RunAs(t)
	dir := o.Dir(t)
	data := filepath.Join(dir, "data")

	// -N: no fsync; the data is thrown away.
	initdb := o.Command(filepath.Join(bin, "initdb"), "-D", data, "--username=postgres",
		"--auth=trust", "--locale=C", "--encoding=UTF8", "-N")
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	srv := &Server{SocketDir: dir, Port: 5432, User: "postgres"}
	cmd := o.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-c", "listen_addresses=", "-c", "unix_socket_directories="+dir, "-c", "fsync=off")
	WaitReady(t, StartProcess(t, cmd), srv.DSN("postgres"))
	return srv
}

// Process is a started server process.
type Process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	once   sync.Once
}

// StartProcess starts cmd (a postgres server, possibly behind a wrapper
// that execs it) with its output kept for failure reports, and stops it by
// PID when the test ends.
func StartProcess(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	logs := &LogBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	p := &Process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.Stop(t)
		if t.Failed() {
			t.Logf("output of %s:\n%s", cmd.Path, logs.String())
		}
	})
	return p
}

// PID is the process id; a wrapper that execs postgres keeps it.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Stop asks the server for a fast shutdown (SIGINT: disconnect clients,
// checkpoint, exit), kills it if that takes too long, and waits for it.
func (p *Process) Stop(t testing.TB) {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			t.Errorf("postgres (pid %d) ignored SIGINT; killing it", p.PID())
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

// WaitReady waits until dsn accepts a connection, failing early if the
// server exits.
func WaitReady(t testing.TB, p *Process, dsn string) {
	t.Helper()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = db.PingContext(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgres not ready after 60s: %v", err)
		}
		select {
		case <-p.exited:
			t.Fatalf("postgres exited before accepting connections (last error: %v)", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
