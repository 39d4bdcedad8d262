package ide

import (
	"slices"
	"testing"
)

func TestDebuggerPorts(t *testing.T) {
	for _, c := range []struct {
		name   string
		launch map[string]any
		want   []uint16
	}{
		{"node inspect flags", map[string]any{"type": "node", "runtimeArgs": []any{"--inspect=127.0.0.1:9230", "--inspect-brk=9231"}}, []uint16{9230, 9231}},
		{"node attach port", map[string]any{"type": "node", "port": float64(9229)}, []uint16{9229}},
		{"NODE_OPTIONS", map[string]any{"type": "node", "env": map[string]any{"NODE_OPTIONS": "--inspect=9333 --max-old-space-size=100"}}, []uint16{9333}},
		{"debugpy", map[string]any{"type": "debugpy", "connect": map[string]any{"host": "localhost", "port": float64(5678)}, "listen": map[string]any{"port": "5679"}}, []uint16{5678, 5679}},
		{"java", map[string]any{"type": "java", "vmArgs": "-Xmx1g -agentlib:jdwp=transport=dt_socket,server=y,suspend=n,address=*:5005"}, []uint16{5005}},
		{"none", map[string]any{"type": "python", "program": "app.py"}, nil},
	} {
		if got := debuggerPorts(c.launch); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestWithEnv(t *testing.T) {
	launch := map[string]any{"type": "node", "env": map[string]any{"PORT": "8080", "DB_HOST": "localhost"}}
	out := withEnv(launch, map[string]string{"DB_HOST": "postgres.staging", "DB_PASSWORD": "s3cr3t"},
		map[string]string{"LD_PRELOAD": "/x/libdoppel.so", "DOPPEL_LAYER_SOCKET": "/tmp/s"})
	env := out["env"].(map[string]any)
	want := map[string]any{"PORT": "8080", "DB_HOST": "localhost", "DB_PASSWORD": "s3cr3t", "LD_PRELOAD": "/x/libdoppel.so", "DOPPEL_LAYER_SOCKET": "/tmp/s"}
	if len(env) != len(want) {
		t.Fatalf("env %v", env)
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %v, want %v", k, env[k], v)
		}
	}
	if len(launch["env"].(map[string]any)) != 2 {
		t.Error("the IDE's launch was changed in place")
	}
}

func TestParseListenAndEphemeral(t *testing.T) {
	ap, ok := parseListen("DAP server listening at: 127.0.0.1:41235")
	if !ok || ap.Port() != 41235 {
		t.Errorf("parseListen: %v %v", ap, ok)
	}
	if _, ok := parseListen("Type 'dlv help' for list of commands."); ok {
		t.Error("parseListen matched another line")
	}
}
