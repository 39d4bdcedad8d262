package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// image is a built archive read back the way docker load would see it.
type image struct {
	img    v1.Image
	config *v1.ConfigFile
	hdrs   map[string]*tar.Header
	data   map[string][]byte
	order  []string
}

// runOK runs the command and fails the test with its output on error.
func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("run %q = %d\nstdout: %s\nstderr: %s", args, code, &stdout, &stderr)
	}
	return stdout.String()
}

// runErr runs the command expecting failure and returns stderr.
func runErr(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(args, &stdout, &stderr); code == 0 {
		t.Fatalf("run %q succeeded, want an error", args)
	}
	return stderr.String()
}

func readImage(t *testing.T, archive string) *image {
	t.Helper()
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v; want exactly one", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	hdrs, data, order := tarEntries(t, rc)
	return &image{img: img, config: cfg, hdrs: hdrs, data: data, order: order}
}

func (im *image) digest(t *testing.T) string {
	t.Helper()
	d, err := im.img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// resolve follows symlinks and hardlinks inside the image to a regular
// file, failing if the chain leaves the image.
func (im *image) resolve(t *testing.T, p string) string {
	t.Helper()
	for range 40 {
		h := im.hdrs[strings.TrimPrefix(p, "/")]
		if h == nil {
			t.Fatalf("%s is not in the image", p)
		}
		switch h.Typeflag {
		case tar.TypeReg:
			return p
		case tar.TypeLink:
			p = "/" + h.Linkname
		case tar.TypeSymlink:
			if path.IsAbs(h.Linkname) {
				p = h.Linkname
			} else {
				p = path.Join(path.Dir(p), h.Linkname)
			}
		default:
			t.Fatalf("%s is of type %c", p, h.Typeflag)
		}
	}
	t.Fatalf("symlink loop at %s", p)
	return ""
}

func TestBuildFromLocalFiles(t *testing.T) {
	src := t.TempDir()
	write := func(name, body string, mode os.FileMode) {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // not subject to umask
			t.Fatal(err)
		}
	}
	write("agent", "#!/bin/true\n", 0o755)
	write("conf/app.yaml", "a: 1\n", 0o640)
	write("conf/suid", "", 0o755|os.ModeSetuid)
	if err := os.Mkdir(filepath.Join(src, "conf", "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../app.yaml", filepath.Join(src, "conf", "sub", "link")); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(t.TempDir(), "img.tar")
	args := []string{
		"-tag", "doppel-test:v1", "-tag", "registry.example.com/team/doppel-test:v1",
		"-out", out,
		"-add", filepath.Join(src, "agent") + ":/usr/local/bin/agent",
		"-add", filepath.Join(src, "conf") + ":/etc/app",
		"-entrypoint", "/usr/local/bin/agent", "-entrypoint", "--serve",
		"-cmd", "--port=80",
		"-env", "FOO=bar", "-env", "PATH=/usr/local/bin:/usr/bin",
		"-workdir", "/work",
		"-user", "999:999",
		"-account", "app:999:999:/var/lib/app",
		"-mkdir", "/tmp:1777", "-mkdir", "/etc/app/sub:0755",
	}
	stdout := runOK(t, args...)
	for _, want := range []string{"doppel-test:v1", "registry.example.com/team/doppel-test:v1", "digest       sha256:", "uncompressed", "compressed"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	im := readImage(t, out)

	c := im.config
	if c.OS != "linux" || c.Architecture != "amd64" {
		t.Errorf("platform = %s/%s", c.OS, c.Architecture)
	}
	if !slices.Equal(c.Config.Entrypoint, []string{"/usr/local/bin/agent", "--serve"}) || !slices.Equal(c.Config.Cmd, []string{"--port=80"}) {
		t.Errorf("entrypoint %q cmd %q", c.Config.Entrypoint, c.Config.Cmd)
	}
	if !slices.Equal(c.Config.Env, []string{"PATH=/usr/local/bin:/usr/bin", "FOO=bar"}) {
		t.Errorf("env = %q", c.Config.Env)
	}
	if c.Config.User != "999:999" || c.Config.WorkingDir != "/work" {
		t.Errorf("user %q workdir %q", c.Config.User, c.Config.WorkingDir)
	}

	for name, want := range map[string]struct {
		typ  byte
		mode int64
		uid  int
	}{
		"usr/":                {tar.TypeDir, 0o755, 0},
		"usr/local/bin/":      {tar.TypeDir, 0o755, 0},
		"usr/local/bin/agent": {tar.TypeReg, 0o755, 0},
		"etc/app/":            {tar.TypeDir, 0o755, 0},
		"etc/app/app.yaml":    {tar.TypeReg, 0o640, 0},
		"etc/app/suid":        {tar.TypeReg, 0o4755, 0},
		"etc/app/sub/":        {tar.TypeDir, 0o755, 0}, // -mkdir overrode 0700
		"etc/app/sub/link":    {tar.TypeSymlink, 0o777, 0},
		"etc/passwd":          {tar.TypeReg, 0o644, 0},
		"etc/group":           {tar.TypeReg, 0o644, 0},
		"tmp/":                {tar.TypeDir, 0o1777, 0},
		"work/":               {tar.TypeDir, 0o755, 0},
		"root/":               {tar.TypeDir, 0o700, 0},
		"var/lib/app/":        {tar.TypeDir, 0o755, 999},
		"var/lib/":            {tar.TypeDir, 0o755, 0},
	} {
		h := im.hdrs[name]
		if h == nil {
			t.Errorf("%s missing from the image", name)
			continue
		}
		if h.Typeflag != want.typ || h.Mode != want.mode || h.Uid != want.uid || h.Gid != want.uid {
			t.Errorf("%s: type %c mode %o owner %d:%d; want type %c mode %o owner %d", name, h.Typeflag, h.Mode, h.Uid, h.Gid, want.typ, want.mode, want.uid)
		}
	}
	if l := im.hdrs["etc/app/sub/link"].Linkname; l != "../app.yaml" {
		t.Errorf("symlink target = %q", l)
	}
	if got := string(im.data["usr/local/bin/agent"]); got != "#!/bin/true\n" {
		t.Errorf("agent content = %q", got)
	}
	if got := string(im.data["etc/passwd"]); got != "root:x:0:0:root:/root:/bin/sh\napp:x:999:999:app:/var/lib/app:/sbin/nologin\n" {
		t.Errorf("passwd = %q", got)
	}
	if got := string(im.data["etc/group"]); got != "root:x:0:\napp:x:999:\n" {
		t.Errorf("group = %q", got)
	}

	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(out) })
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || len(m[0].RepoTags) != 2 {
		t.Errorf("manifest.json = %+v, want one image with two tags", m)
	}

	// Same inputs, other mtimes and output path: same digest.
	first := im.digest(t)
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(src, "agent"), later, later); err != nil {
		t.Fatal(err)
	}
	args[slices.Index(args, out)] = filepath.Join(t.TempDir(), "again.tar")
	runOK(t, args...)
	again := args[slices.Index(args, "-out")+1]
	if d := readImage(t, again).digest(t); d != first {
		t.Errorf("rebuild digest %s != %s", d, first)
	}
	if !sameFile(t, out, again) {
		t.Error("rebuild wrote a different archive (tag order?)")
	}
}

func TestBuildWithELFDependencies(t *testing.T) {
	if !isELF("/bin/ls") {
		t.Skip("no ELF /bin/ls on this machine")
	}
	dir := t.TempDir()
	build := func(name string) (*image, string) {
		out := filepath.Join(dir, name)
		runOK(t, "-tag", "ls:test", "-out", out, "-add", "/bin/ls", "-entrypoint", "/bin/ls")
		return readImage(t, out), out
	}
	im, out := build("a.tar")
	if _, again := build("b.tar"); !sameFile(t, out, again) {
		t.Error("two builds of one image wrote different archives")
	}
	if h := im.hdrs["bin/ls"]; h == nil || h.Typeflag != tar.TypeReg {
		t.Fatalf("bin/ls = %+v", h)
	}
	// The loader is added as the symlink it is on the host, plus target.
	if h := im.hdrs["lib64/ld-linux-x86-64.so.2"]; h == nil {
		t.Error("ELF interpreter missing")
	}
	im.resolve(t, "/lib64/ld-linux-x86-64.so.2")
	var libc string
	for _, n := range im.order {
		if path.Base(n) == "libc.so.6" {
			libc = "/" + n
		}
	}
	if libc == "" {
		t.Fatalf("no libc.so.6 in %q", im.order)
	}
	im.resolve(t, libc)
	// Every symlink must resolve inside the image.
	for _, n := range im.order {
		if im.hdrs[n].Typeflag == tar.TypeSymlink {
			im.resolve(t, "/"+n)
		}
	}
	runInChroot(t, im, []string{"/bin/ls", "/"}, "bin")
}

func TestBuildFromDeb(t *testing.T) {
	if _, err := debFiles("dash", &bytes.Buffer{}); err != nil {
		t.Skipf("dash is not installed: %v", err)
	}
	custom := filepath.Join(t.TempDir(), "motd")
	if err := os.WriteFile(custom, []byte("explicit"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "dash.tar")
	runOK(t, "-tag", "dash:test", "-out", out, "-deb", "dash",
		"-add", custom+":/usr/share/debianutils/shells.d/dash", "-entrypoint", "/bin/sh",
		"-exclude", "/usr/share/men?", "-exclude", "/usr/share/lintian/*/dash")
	im := readImage(t, out)
	if h := im.hdrs["bin/dash"]; h == nil || h.Typeflag != tar.TypeReg || h.Mode != 0o755 {
		t.Errorf("bin/dash = %+v", h)
	}
	if h := im.hdrs["bin/sh"]; h == nil || h.Typeflag != tar.TypeSymlink {
		t.Errorf("bin/sh = %+v, want a symlink", h)
	}
	for _, n := range im.order {
		if skipDebPath("/" + strings.TrimSuffix(n, "/")) {
			t.Errorf("%s should have been skipped", n)
		}
	}
	for _, n := range []string{"usr/share/menu/", "usr/share/menu/dash", "usr/share/lintian/overrides/dash"} {
		if im.hdrs[n] != nil {
			t.Errorf("%s should have been excluded", n)
		}
	}
	// -add beats -deb whatever the order.
	if got := string(im.data["usr/share/debianutils/shells.d/dash"]); got != "explicit" {
		t.Errorf("shells.d/dash = %q, want the -add file", got)
	}
	im.resolve(t, "/lib64/ld-linux-x86-64.so.2")
	runInChroot(t, im, []string{"/bin/sh", "-c", "echo hello from dash"}, "hello from dash")

	stderr := runErr(t, "-tag", "x:1", "-out", out, "-deb", "doppel-no-such-package")
	if !strings.Contains(stderr, "apt-get install doppel-no-such-package") {
		t.Errorf("stderr = %q, want an apt-get hint", stderr)
	}
}

func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.tar")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-add", filepath.Join(dir, "missing") + ":/x"}, "no such file"},
		{[]string{"-add", "relative-without-dst"}, "bad -add"},
		{[]string{"-add", f + ":/a", "-add", f + ":/a/b"}, "parent /a is a file"},
		{[]string{"-add", f + ":/etc/passwd", "-account", "a:1:1:/a"}, "/etc/passwd is both added and generated"},
	} {
		stderr := runErr(t, append([]string{"-tag", "x:1", "-out", out}, tc.args...)...)
		if !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: stderr = %q, want %q", tc.args, stderr, tc.want)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("failed builds left %s behind", out)
	}
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}

// runInChroot unpacks the image and runs argv in it, proving that the
// libraries and loader are complete. It needs root.
func runInChroot(t *testing.T, im *image, argv []string, want string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Log("not root: skipping the chroot run")
		return
	}
	root := t.TempDir()
	for _, n := range im.order {
		h, p := im.hdrs[n], filepath.Join(root, n)
		var err error
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			err = os.WriteFile(p, im.data[n], os.FileMode(h.Mode).Perm())
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		case tar.TypeLink:
			err = os.Link(filepath.Join(root, h.Linkname), p)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	cmd.Env = []string{defaultPath}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), want) {
		t.Errorf("chroot %q: %v\n%s", argv, err, out)
	}
}
