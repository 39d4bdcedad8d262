package ide

import (
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// debugTypes are the launch types resolveLaunch intercepts: go through
// Delve under the launcher, the others (a dynamically linked debuggee the
// IDE starts itself) through libdoppel.so, which the env preloads.
var debugTypes = []string{"go", "node", "pwa-node", "python", "debugpy", "java"}

// launchString returns launch[key] if it is a string.
func launchString(launch map[string]any, key string) string {
	s, _ := launch[key].(string)
	return s
}

// launchStrings returns launch[key] as a list of strings (an array of
// strings, or one string split on spaces).
func launchStrings(launch map[string]any, key string) []string {
	switch v := launch[key].(type) {
	case string:
		return strings.Fields(v)
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// portOf reads a port from a JSON number or a numeric string.
func portOf(v any) (uint16, bool) {
	switch p := v.(type) {
	case float64:
		if p > 0 && p < 65536 && p == float64(int(p)) {
			return uint16(p), true
		}
	case string:
		if n, err := strconv.Atoi(p); err == nil && n > 0 && n < 65536 {
			return uint16(n), true
		}
	}
	return 0, false
}

var (
	// --inspect, --inspect-brk, --inspect-port, --inspect-wait with
	// [HOST:]PORT.
	inspectFlag = regexp.MustCompile(`^--inspect(?:-brk|-port|-wait)?=(?:.*:)?(\d+)$`)
	// -agentlib:jdwp=...,address=[HOST:]PORT
	jdwpAddress = regexp.MustCompile(`jdwp=.*address=(?:[^,]*:)?(\d+)`)
)

// debuggerPorts are the ports of a launch's debugger, which must never be
// subscribed: launch.port, node's --inspect flags, debugpy's connect and
// listen, Java's JDWP address.
func debuggerPorts(launch map[string]any) []uint16 {
	var ports []uint16
	add := func(v any) {
		if p, ok := portOf(v); ok && !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	add(launch["port"])
	add(launch["debugServer"])
	for _, key := range []string{"connect", "listen"} {
		if m, ok := launch[key].(map[string]any); ok {
			add(m["port"])
		}
	}
	for _, key := range []string{"runtimeArgs", "args", "vmArgs"} {
		for _, a := range launchStrings(launch, key) {
			if m := inspectFlag.FindStringSubmatch(a); m != nil {
				add(m[1])
			}
			if m := jdwpAddress.FindStringSubmatch(a); m != nil {
				add(m[1])
			}
		}
	}
	if env, ok := launch["env"].(map[string]any); ok {
		for _, key := range []string{"NODE_OPTIONS", "JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS"} {
			if v, ok := env[key].(string); ok {
				for _, a := range strings.Fields(v) {
					if m := inspectFlag.FindStringSubmatch(a); m != nil {
						add(m[1])
					}
					if m := jdwpAddress.FindStringSubmatch(a); m != nil {
						add(m[1])
					}
				}
			}
		}
	}
	return ports
}

// withEnv returns launch with env set to the target's variables under the
// launch's own, plus extra (doppel's own variables, which win).
func withEnv(launch map[string]any, target map[string]string, extra map[string]string) map[string]any {
	out := maps.Clone(launch)
	env := map[string]any{}
	for k, v := range target {
		env[k] = v
	}
	if own, ok := launch["env"].(map[string]any); ok {
		maps.Copy(env, own)
	}
	for k, v := range extra {
		env[k] = v
	}
	out["env"] = env
	return out
}

// envMap turns KEY=value pairs into a map.
func envMap(kvs []string) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			m[k] = v
		}
	}
	return m
}

// findDlv locates Delve: the launch's dlvToolPath, the server's option,
// $DOPPEL_DLV, PATH, ~/go/bin, $GOBIN, ~/.cache/doppel/tools.
func findDlv(launch map[string]any, configured string) (string, bool) {
	candidates := []string{launchString(launch, "dlvToolPath"), configured, os.Getenv("DOPPEL_DLV")}
	if p, err := exec.LookPath("dlv"); err == nil {
		candidates = append(candidates, p)
	}
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		candidates = append(candidates, filepath.Join(gobin, "dlv"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, "go", "bin", "dlv"), filepath.Join(home, ".cache", "doppel", "tools", "dlv"))
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return c, true
		}
	}
	return "", false
}

// dapListening is Delve's line once its DAP server listens.
var dapListening = regexp.MustCompile(`DAP server listening at: (\S+)`)

// parseListen reads the address out of Delve's line.
func parseListen(line string) (netip.AddrPort, bool) {
	m := dapListening.FindStringSubmatch(line)
	if m == nil {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(m[1])
	return ap, err == nil
}
