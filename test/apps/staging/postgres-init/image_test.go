package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/doppel-dev/doppel/test/apps/internal/pgtest"
)

// TestImageRootfs checks that rootfs.sh puts everything the server needs
// into the image: it assembles the root filesystem, then runs
// /postgres-init in it under chroot as uid/gid 999 with a clean
// environment, the way the pod runs it, and connects like the backend does.
func TestImageRootfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot and mknod need root")
	}
	pgtest.Bin(t) // fails with the install hint if the package is missing
	bin := buildInit(t, t.TempDir())
	root := filepath.Join(t.TempDir(), "rootfs")
	if out, err := exec.Command("bash", "rootfs.sh", root, bin).CombinedOutput(); err != nil {
		t.Fatalf("rootfs.sh: %v\n%s", err, out)
	}

	// What the container runtime and the pod spec add to the image.
	mustMkdir(t, filepath.Join(root, "dev", "shm"), 0o1777)
	// initdb's shell commands redirect to /dev/null.
	devNull := filepath.Join(root, "dev", "null")
	if err := syscall.Mknod(devNull, syscall.S_IFCHR|0o666, 1<<8|3 /* makedev(1, 3) */); err != nil {
		t.Fatalf("mknod /dev/null: %v", err)
	}
	if err := os.Chmod(devNull, 0o666); err != nil { // undo the umask
		t.Fatal(err)
	}
	data := filepath.Join(root, "var", "lib", "postgresql", "data")
	mustMkdir(t, data, 0o2777) // the emptyDir, owned root:fsGroup
	if err := os.Chown(data, 0, 999); err != nil {
		t.Fatal(err)
	}

	port := freePort(t)
	cmd := exec.Command("chroot", "--userspec=999:999", root,
		"/postgres-init", "-c", "listen_addresses=127.0.0.1", "-p", fmt.Sprint(port))
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"POSTGRES_USER=app",
		"POSTGRES_PASSWORD=" + testPassword,
		"POSTGRES_DB=videos",
	}
	p := pgtest.StartProcess(t, cmd)
	pgtest.WaitReady(t, p, fmt.Sprintf("host=127.0.0.1 port=%d user=app password='%s' dbname=videos sslmode=disable",
		port, `s3cret \'pw\'`))

	var table string
	if err := openTCP(t, port, testPassword).QueryRow(`SELECT to_regclass('videos')::text`).Scan(&table); err != nil || table != "videos" {
		t.Errorf("videos table: %q, %v", table, err)
	}
	if _, err := os.Stat(filepath.Join(root, "tmp", fmt.Sprintf(".s.PGSQL.%d", port))); err != nil {
		t.Errorf("no unix socket in the image's /tmp: %v", err)
	}
}
