package main

import (
	"strings"
	"testing"
)

func TestParseAdd(t *testing.T) {
	for _, tc := range []struct {
		in, src, dst, err string
	}{
		{in: "./bin/agent:/usr/local/bin/agent", src: "./bin/agent", dst: "/usr/local/bin/agent"},
		{in: "a:b:/x//y/", src: "a:b", dst: "/x/y/a:b"},
		{in: "/bin/ls", src: "/bin/ls", dst: "/bin/ls"},
		{in: "out/agent:/usr/bin/", src: "out/agent", dst: "/usr/bin/agent"},
		{in: "agent", err: "no absolute DST"},
		{in: "agent:usr/bin/agent", err: "no absolute DST"},
		{in: ":/x", err: "empty SRC"},
		{in: "dir:/", src: "dir", dst: "/dir"},
		{in: "/:/", err: "root"},
	} {
		got, err := parseAdd(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseAdd(%q) error = %v, want it to mention %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got.src != tc.src || got.dst != tc.dst {
			t.Errorf("parseAdd(%q) = %+v, %v; want src %q dst %q", tc.in, got, err, tc.src, tc.dst)
		}
	}
}

func TestParseAccount(t *testing.T) {
	a, err := parseAccount("postgres:999:998:/var/lib/postgresql/")
	if err != nil || a != (account{"postgres", 999, 998, "/var/lib/postgresql"}) {
		t.Fatalf("got %+v, %v", a, err)
	}
	for _, bad := range []string{"x:1:1", "x:a:1:/h", "x:1:b:/h", "x:1:1:home", ":1:1:/h", "root:5:5:/root"} {
		if _, err := parseAccount(bad); err == nil || !strings.Contains(err.Error(), "NAME:UID:GID:HOME") {
			t.Errorf("parseAccount(%q) error = %v, want a hint", bad, err)
		}
	}
}

func TestParseMkdir(t *testing.T) {
	m, err := parseMkdir("/tmp:1777")
	if err != nil || m.dir != "/tmp" || m.mode != 0o1777 {
		t.Fatalf("got %+v, %v", m, err)
	}
	if m, _ := parseMkdir("/data/"); m.dir != "/data" || m.mode != 0o755 {
		t.Errorf("default mode: got %+v", m)
	}
	for _, bad := range []string{"tmp", "/", "/tmp:999", "/tmp:17777", "/tmp:rw"} {
		if _, err := parseMkdir(bad); err == nil {
			t.Errorf("parseMkdir(%q) succeeded", bad)
		}
	}
}

func TestCheckUser(t *testing.T) {
	accts := []account{{name: "app", uid: 5, gid: 5, home: "/app"}}
	for _, ok := range []string{"0", "65532:65532", "app", "app:app", "root:0"} {
		if err := checkUser(ok, accts); err != nil {
			t.Errorf("checkUser(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"nobody", "1:", ":1", "app:staff"} {
		if err := checkUser(bad, accts); err == nil {
			t.Errorf("checkUser(%q) succeeded", bad)
		}
	}
}

func TestParseArgsErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-out", "x.tar"}, "missing -tag"},
		{[]string{"-tag", "a:b"}, "missing -out"},
		{[]string{"-tag", "a@sha256:abc", "-out", "x"}, "bad -tag"},
		{[]string{"-tag", "a:1", "-out", "x", "-env", "NOEQUALS"}, "KEY=VALUE"},
		{[]string{"-tag", "a:1", "-out", "x", "-workdir", "rel"}, "absolute"},
		{[]string{"-tag", "a:1", "-out", "x", "-user", "ghost"}, "-account"},
		{[]string{"-tag", "a:1", "-out", "x", "-account", "a:1:1:/a", "-account", "a:2:2:/b"}, "twice"},
		{[]string{"-tag", "a:1", "-out", "x", "stray"}, "unexpected argument"},
		{[]string{"-tag", "a:1", "-out", "x", "-bogus"}, "run with -h"},
		{[]string{"-tag", "a:1", "-out", "x", "-exclude", "rel/*"}, "bad -exclude"},
		{[]string{"-tag", "a:1", "-out", "x", "-exclude", "/a/[b"}, "bad -exclude"},
	} {
		_, err := parseArgs(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseArgs(%q) error = %v, want it to mention %q", tc.args, err, tc.want)
		}
	}
}
