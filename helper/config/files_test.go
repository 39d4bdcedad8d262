package config

import "testing"

var testHost = HostPaths{
	WorkDir:        "/home/dev/src/backend",
	Home:           "/home/dev",
	TempDir:        "/tmp",
	Executable:     "/home/dev/go/bin/backend",
	TargetAppPaths: []string{"/usr/src/app", "/etc/backend", "/", ""},
}

func TestFileModeDefaults(t *testing.T) {
	rules := Default().Feature.FS.Rules(testHost)
	for _, tc := range []struct {
		path string
		want FileDecision
	}{
		// The target's name service files.
		{"/etc/resolv.conf", FileRemote},
		{"/etc/hosts", FileRemote},
		{"/etc/hostname", FileRemote},
		{"/etc/nsswitch.conf", FileRemote},
		// System directories, interpreters, toolchains, libraries.
		{"/etc/passwd", FileLocal},
		{"/etc/ssl/certs/ca-certificates.crt", FileLocal},
		{"/usr/lib/x86_64-linux-gnu/libc.so.6", FileLocal},
		{"/lib64/ld-linux-x86-64.so.2", FileLocal},
		{"/usr/local/go/src/net/http/server.go", FileLocal},
		{"/bin/sh", FileLocal},
		{"/opt/java/openjdk/lib/modules", FileLocal},
		{"/proc/self/maps", FileLocal},
		{"/sys/fs/cgroup/cpu.max", FileLocal},
		{"/dev/urandom", FileLocal},
		{"/", FileLocal},
		// The local program: working directory, executable, home dot-files, temp.
		{"/home/dev/src/backend/config.yaml", FileLocal},
		{"/home/dev/src/backend", FileLocal},
		{"/home/dev/go/bin/backend", FileLocal},
		{"/home/dev/.gitconfig", FileLocal},
		{"/home/dev/.cache/go-build/ab/cd", FileLocal},
		{"/tmp/go-build123/main", FileLocal},
		{"/var/tmp/x", FileLocal},
		// Code and library files wherever they are.
		{"/app/lib/util.py", FileLocal},
		{"/app/lib/util.cpython-311.pyc", FileLocal},
		{"/srv/app/node_modules/express/index.js", FileLocal},
		{"/app/package.json", FileLocal},
		{"/srv/lib/native.so.1.2", FileLocal},
		{"/app/app.jar", FileLocal},
		// The developer's cloud credentials do not exist for the program.
		{"/home/dev/.aws/credentials", FileNotFound},
		{"/home/dev/.kube/config", FileNotFound},
		{"/home/dev/.config/gcloud/application_default_credentials.json", FileNotFound},
		{"/home/dev/.awsome", FileLocal},
		// The target application's directories, even under /usr and /etc.
		{"/usr/src/app/config/settings.yaml", FileRemote},
		{"/etc/backend/secret.txt", FileRemote},
		{"/usr/src/application", FileLocal},
		// Anything else: the mode ("read").
		{"/var/run/secrets/kubernetes.io/serviceaccount/token", FileRemote},
		{"/data/uploads/1.png", FileRemote},
		{"/srv/config.yaml", FileRemote},
	} {
		if got := rules.FileMode(tc.path); got != tc.want {
			t.Errorf("FileMode(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
}

func TestFileModeUserRules(t *testing.T) {
	c := mustParse(t, `
feature:
  fs:
    mode: read
    read_write: ['^/data/rw/']
    read_only: ['^/etc/ssl/', '^/home/dev/src/backend/remote\.yaml$']
    local: ['^/data/', '\.LOCK$']
    not_found: ['^/etc/backend/debug']
    mapping:
      '^/home/(?P<user>[^/]+)/dev/config': /etc/backend
      '^/never/': /x/
`)
	rules := c.Feature.FS.Rules(testHost)
	for _, tc := range []struct {
		path       string
		write      bool
		want       FileDecision
		wantMapped string
	}{
		// User rules come before the defaults.
		{"/etc/ssl/certs/ca.pem", false, FileRemote, ""},
		{"/etc/ssl/certs/ca.pem", true, FileLocal, ""}, // read_only: writes are local
		{"/home/dev/src/backend/remote.yaml", false, FileRemote, ""},
		{"/data/rw/file", true, FileRemote, ""}, // read_write before local
		{"/data/other", false, FileLocal, ""},
		{"/srv/X.lock", false, FileLocal, ""}, // case-insensitive, as in mirrord
		{"/etc/backend/debug.log", false, FileNotFound, ""},
		// Mapping rewrites the path first; the rules see the new path.
		{"/home/alice/dev/config/app.yaml", false, FileRemote, "/etc/backend/app.yaml"},
		{"/home/alice/dev/config/debug.txt", false, FileNotFound, "/etc/backend/debug.txt"},
		// Mode read: remote reads, local writes.
		{"/srv/data.bin", false, FileRemote, ""},
		{"/srv/data.bin", true, FileLocal, ""},
		{"/etc/hosts", true, FileLocal, ""},
	} {
		got, mapped := rules.Resolve(tc.path, tc.write)
		if tc.wantMapped == "" {
			tc.wantMapped = tc.path
		}
		if got != tc.want || mapped != tc.wantMapped {
			t.Errorf("Resolve(%q, write=%v) = %v, %q; want %v, %q", tc.path, tc.write, got, mapped, tc.want, tc.wantMapped)
		}
	}
}

func TestFileModeByMode(t *testing.T) {
	for _, tc := range []struct {
		mode  string
		path  string
		write bool
		want  FileDecision
	}{
		{"write", "/srv/data.bin", true, FileRemote},
		{"write", "/usr/src/app/out.log", true, FileRemote},
		{"write", "/usr/lib/libc.so", false, FileLocal},
		{"read", "/usr/src/app/out.log", true, FileLocal},
		{"localwithoverrides", "/srv/data.bin", false, FileLocal},
		{"localwithoverrides", "/etc/resolv.conf", false, FileRemote},
		{"localwithoverrides", "/usr/src/app/config.yaml", false, FileRemote},
		{"localwithoverrides", "/srv/remote.cfg", false, FileRemote}, // user rule
		{"local", "/etc/resolv.conf", false, FileLocal},
		{"local", "/srv/remote.cfg", false, FileLocal}, // "local" ignores rules, as in mirrord
		{"local", "/home/dev/.aws/credentials", false, FileLocal},
	} {
		c := mustParse(t, "feature: {fs: {mode: "+tc.mode+", read_only: [remote\\.cfg$]}}")
		got, _ := c.Feature.FS.Rules(testHost).Resolve(tc.path, tc.write)
		if got != tc.want {
			t.Errorf("mode %s: Resolve(%q, write=%v) = %v, want %v", tc.mode, tc.path, tc.write, got, tc.want)
		}
	}
}

func TestLocalHostPaths(t *testing.T) {
	h := LocalHostPaths()
	if h.WorkDir == "" || h.TempDir == "" {
		t.Errorf("%+v", h)
	}
	rules := Default().Feature.FS.Rules(h)
	if got := rules.FileMode(h.WorkDir + "/main.go"); got != FileLocal {
		t.Errorf("the working directory is %v", got)
	}
}
