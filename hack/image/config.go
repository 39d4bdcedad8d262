package main

import (
	"fmt"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// imageConfig is the runtime configuration. Created is fixed for
// reproducible digests. The architecture is the host's, since host
// binaries and libraries go into the image (amd64 here).
func imageConfig(o *options) *v1.ConfigFile {
	env := []string{defaultPath}
	for _, e := range o.env {
		if strings.HasPrefix(e, "PATH=") {
			env[0] = e
		} else {
			env = append(env, e)
		}
	}
	return &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      v1.Time{Time: epoch},
		Config: v1.Config{
			Entrypoint: o.entrypoint,
			Cmd:        o.cmd,
			Env:        env,
			WorkingDir: o.workdir,
			User:       o.user,
		},
	}
}

// accountFiles renders /etc/passwd and /etc/group: root first, then the
// accounts in flag order; one group per distinct GID, named after its
// first account.
func accountFiles(accts []account) (passwd, group []byte) {
	var pw, gr strings.Builder
	pw.WriteString("root:x:0:0:root:/root:/bin/sh\n")
	gr.WriteString("root:x:0:\n")
	groups := map[int]bool{0: true}
	for _, a := range accts {
		if a.name == "root" {
			continue
		}
		fmt.Fprintf(&pw, "%s:x:%d:%d:%s:%s:/sbin/nologin\n", a.name, a.uid, a.gid, a.name, a.home)
		if !groups[a.gid] {
			groups[a.gid] = true
			fmt.Fprintf(&gr, "%s:x:%d:\n", a.name, a.gid)
		}
	}
	return []byte(pw.String()), []byte(gr.String())
}
