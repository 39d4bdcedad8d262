package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// options is the parsed command line.
type options struct {
	tags       []string
	out        string
	adds       []addSpec
	debs       []string
	excludes   []string
	entrypoint []string
	cmd        []string
	env        []string
	workdir    string
	user       string
	accounts   []account
	mkdirs     []mkdirSpec
	importAddr string
}

// addSpec is one -add SRC:DST.
type addSpec struct {
	src string // host path as given
	dst string // clean absolute image path
}

// account is one -account NAME:UID:GID:HOME.
type account struct {
	name     string
	uid, gid int
	home     string
}

// mkdirSpec is one -mkdir DIR[:MODE].
type mkdirSpec struct {
	dir  string
	mode uint32
}

// listFlag collects a repeatable flag in command-line order.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

const usageText = `usage: go run ./hack/image -tag REF -out FILE.tar [flags]

Builds a single-layer linux image from local files, without Docker, and
writes it as a docker-archive tarball (for docker load / ctr images import).
Same inputs give the same digest.

  -tag REF             image reference, e.g. doppel-agent:v0.1.0 (repeatable)
  -out FILE            docker-archive tarball to write
  -add SRC[:DST]       add a file or directory (recursively) at DST; DST ending
                       in / means "inside this directory"; without DST, SRC
                       must be absolute and is added at the same path.
                       A symlink SRC is copied as its target unless DST is
                       SRC's own path, then it stays a symlink plus target.
                       Dynamic ELF files bring their shared libraries and the
                       ELF interpreter along, at their host paths. (repeatable)
  -deb PKG             add the installed Debian package's files (no docs,
                       man pages, locales) and their libraries (repeatable)
  -exclude GLOB        drop image paths matching GLOB (and what is below
                       them) from -add and -deb before libraries are
                       resolved, e.g. -exclude '/usr/lib/postgresql/*/lib/llvmjit*'
  -entrypoint ARG      one entrypoint argv element per flag (repeatable)
  -cmd ARG             one cmd argv element per flag (repeatable)
  -env K=V             environment (repeatable; PATH has a default)
  -workdir DIR         working directory (created if missing)
  -user UID[:GID]      user to run as (numbers, or names from -account)
  -account NAME:UID:GID:HOME
                       add /etc/passwd and /etc/group lines and create HOME
                       owned by UID:GID (repeatable; root is always there)
  -mkdir DIR[:MODE]    create a directory, MODE in octal, default 0755
                       (repeatable), e.g. -mkdir /tmp:1777
  -import SOCKET       then import into containerd at SOCKET, namespace k8s.io
`

// parseArgs turns the command line into options, reporting what to change
// when a value is malformed.
func parseArgs(args []string) (*options, error) {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run prints errors and usage once, its way

	var tags, adds, debs, excludes, entrypoint, cmd, env, accounts, mkdirs listFlag
	o := &options{}
	fs.Var(&tags, "tag", "")
	fs.StringVar(&o.out, "out", "", "")
	fs.Var(&adds, "add", "")
	fs.Var(&debs, "deb", "")
	fs.Var(&excludes, "exclude", "")
	fs.Var(&entrypoint, "entrypoint", "")
	fs.Var(&cmd, "cmd", "")
	fs.Var(&env, "env", "")
	fs.StringVar(&o.workdir, "workdir", "", "")
	fs.StringVar(&o.user, "user", "", "")
	fs.Var(&accounts, "account", "")
	fs.Var(&mkdirs, "mkdir", "")
	fs.StringVar(&o.importAddr, "import", "", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%w (run with -h for the flags)", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: every input goes through a flag (did you mean -add %s?)", fs.Arg(0), fs.Arg(0))
	}
	if len(tags) == 0 {
		return nil, errors.New("missing -tag: name the image, e.g. -tag doppel-agent:v0.1.0")
	}
	if o.out == "" {
		return nil, errors.New("missing -out: name the tarball to write, e.g. -out /tmp/agent.tar")
	}
	for _, t := range tags {
		if err := checkTag(t); err != nil {
			return nil, err
		}
	}
	o.tags = tags
	o.debs = debs
	for _, x := range excludes {
		if _, err := path.Match(x, "/"); err != nil || !path.IsAbs(x) {
			return nil, fmt.Errorf("bad -exclude %q: want an absolute glob, e.g. -exclude '/usr/lib/postgresql/*/lib/llvmjit*'", x)
		}
	}
	o.excludes = excludes
	o.entrypoint = entrypoint
	o.cmd = cmd

	for _, a := range adds {
		s, err := parseAdd(a)
		if err != nil {
			return nil, err
		}
		o.adds = append(o.adds, s)
	}
	for _, e := range env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return nil, fmt.Errorf("bad -env %q: want KEY=VALUE, e.g. -env HOME=/root", e)
		}
	}
	o.env = env
	for _, a := range accounts {
		acct, err := parseAccount(a)
		if err != nil {
			return nil, err
		}
		for _, prev := range o.accounts {
			if prev.name == acct.name {
				return nil, fmt.Errorf("-account %s given twice", acct.name)
			}
		}
		o.accounts = append(o.accounts, acct)
	}
	for _, m := range mkdirs {
		s, err := parseMkdir(m)
		if err != nil {
			return nil, err
		}
		o.mkdirs = append(o.mkdirs, s)
	}
	if o.workdir != "" && !path.IsAbs(o.workdir) {
		return nil, fmt.Errorf("bad -workdir %q: want an absolute path, e.g. -workdir /data", o.workdir)
	}
	if o.user != "" {
		if err := checkUser(o.user, o.accounts); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// parseAdd splits SRC:DST at the first ":/" so that SRC may contain colons
// while DST stays absolute.
func parseAdd(s string) (addSpec, error) {
	bad := func(why string) error {
		return fmt.Errorf("bad -add %q: %s (want SRC:DST with an absolute DST, e.g. -add ./bin/agent:/usr/local/bin/agent)", s, why)
	}
	src, dst := s, ""
	if i := strings.Index(s, ":/"); i >= 0 {
		src, dst = s[:i], s[i+1:]
	} else if filepath.IsAbs(s) {
		dst = filepath.ToSlash(filepath.Clean(s)) // -add /bin/ls means "at the same path"
	} else {
		return addSpec{}, bad("no absolute DST")
	}
	if src == "" {
		return addSpec{}, bad("empty SRC")
	}
	if strings.HasSuffix(dst, "/") {
		dst = path.Join(dst, filepath.Base(src))
	}
	dst = path.Clean(dst)
	if dst == "/" {
		return addSpec{}, bad("DST is the root; name a path under it")
	}
	return addSpec{src: src, dst: dst}, nil
}

func parseAccount(s string) (account, error) {
	bad := func(why string) error {
		return fmt.Errorf("bad -account %q: %s (want NAME:UID:GID:HOME, e.g. -account postgres:999:999:/var/lib/postgresql)", s, why)
	}
	f := strings.Split(s, ":")
	if len(f) != 4 {
		return account{}, bad("need 4 fields")
	}
	if f[0] == "" || strings.ContainsAny(f[0], " \t\n,") {
		return account{}, bad("empty or odd NAME")
	}
	uid, err := strconv.ParseUint(f[1], 10, 31)
	if err != nil {
		return account{}, bad("UID is not a number")
	}
	gid, err := strconv.ParseUint(f[2], 10, 31)
	if err != nil {
		return account{}, bad("GID is not a number")
	}
	if !path.IsAbs(f[3]) {
		return account{}, bad("HOME is not absolute")
	}
	a := account{name: f[0], uid: int(uid), gid: int(gid), home: path.Clean(f[3])}
	if a.name == "root" && (a.uid != 0 || a.gid != 0 || a.home != "/root") {
		return account{}, bad("root is always root:0:0:/root")
	}
	return a, nil
}

func parseMkdir(s string) (mkdirSpec, error) {
	dir, modeStr, hasMode := strings.Cut(s, ":")
	if !path.IsAbs(dir) || path.Clean(dir) == "/" {
		return mkdirSpec{}, fmt.Errorf("bad -mkdir %q: want an absolute directory below /, e.g. -mkdir /tmp:1777", s)
	}
	m := mkdirSpec{dir: path.Clean(dir), mode: 0o755}
	if hasMode {
		v, err := strconv.ParseUint(modeStr, 8, 32)
		if err != nil || v > 0o7777 {
			return mkdirSpec{}, fmt.Errorf("bad -mkdir %q: MODE must be octal up to 7777, e.g. -mkdir /tmp:1777", s)
		}
		m.mode = uint32(v)
	}
	return m, nil
}

// checkUser accepts numeric ids, or names that the generated /etc/passwd
// and /etc/group will resolve.
func checkUser(s string, accts []account) error {
	u, g, hasGroup := strings.Cut(s, ":")
	known := func(n string) bool {
		if _, err := strconv.ParseUint(n, 10, 31); err == nil || n == "root" {
			return true
		}
		for _, a := range accts {
			if a.name == n {
				return true
			}
		}
		return false
	}
	if u == "" || !known(u) || (hasGroup && (g == "" || !known(g))) {
		return fmt.Errorf("bad -user %q: want UID[:GID] as numbers, or names defined with -account", s)
	}
	return nil
}
