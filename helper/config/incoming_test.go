package config

import (
	"strings"
	"testing"
)

func TestIncomingValidation(t *testing.T) {
	for _, tc := range []struct {
		incoming string
		wantErr  string // "" for valid
		wantWarn string
	}{
		{incoming: "{mode: steal, http_filter: {header_filter: '^User-Agent: (?!kube-probe)'}}"}, // look-ahead, as in mirrord
		{incoming: "{mode: steal, http_filter: {path_filter: '^(?!/health/)'}}"},
		{incoming: "{mode: steal, http_filter: {method_filter: post}}"},
		{incoming: "{mode: steal, http_filter: {all_of: [{header: '^x-debug: 1$'}, {path: '^/api/'}, {method: GET}]}}"},
		{incoming: "{mode: steal, http_filter: {any_of: [{path: '^/a'}], ports: [8000, 9000]}}"},
		{incoming: "{mode: steal, ports: [80, 443], port_mapping: [[8080, 80]], listen_ports: [[80, 4480]]}"},
		{incoming: "{mode: mirror, ignore_ports: [9090, 9091], ignore_localhost: true, on_concurrent_steal: continue}"},
		{incoming: "{mode: mirror, http_filter: {header_filter: x}}", wantWarn: "http_filter: is only used in steal mode"},
		{incoming: "{mode: steal, http_filter: {ports: [80]}}", wantWarn: "http_filter.ports: has no effect without a filter"},
		{incoming: "{port_mapping: [[80, 80]]}", wantWarn: "maps port 80 to itself"},
		{incoming: "{mode: steal, http_filter: {header_filter: ''}}", wantErr: "header_filter: must not be empty"},
		{incoming: "{mode: steal, http_filter: {path_filter: '(('}}", wantErr: `path_filter: invalid regular expression "(("`},
		{incoming: "{mode: steal, http_filter: {method_filter: 'GET /'}}", wantErr: `method_filter: invalid HTTP method "GET /"`},
		{incoming: "{mode: steal, http_filter: {path_filter: a, method_filter: GET}}", wantErr: "path_filter and method_filter cannot be used together"},
		{incoming: "{mode: steal, http_filter: {all_of: []}}", wantErr: "all_of: must not be empty"},
		{incoming: "{mode: steal, http_filter: {any_of: [{header: a, path: b}]}}", wantErr: `any_of[0]: needs exactly one of "header", "path" and "method"`},
		{incoming: "{mode: steal, http_filter: {any_of: [{}]}}", wantErr: `any_of[0]: needs exactly one of`},
		{incoming: "{mode: steal, http_filter: {any_of: [{header: '[a'}]}}", wantErr: `any_of[0].header: invalid regular expression`},
		{incoming: "{mode: steal, http_filter: {any_of: [{host: a}]}}", wantErr: `unknown key feature.network.incoming.http_filter.any_of[0].host`},
		{incoming: "{ports: [80], ignore_ports: [81]}", wantErr: "ports and ignore_ports cannot be used together"},
		{incoming: "{port_mapping: [[8080, 80], [8080, 81]]}", wantErr: "port_mapping[1]: local port 8080 is already mapped by entry 0"},
		{incoming: "{listen_ports: [[80, 4480], [81, 4480]]}", wantErr: "listen_ports[1]: local port 4480 is already mapped by entry 0"},
		{incoming: "{port_mapping: [[0, 80]]}", wantErr: "port_mapping[0][0]: 0 is out of range (1 to 65535)"},
		{incoming: "{mode: stael}", wantErr: `mode: invalid value "stael": must be one of "mirror", "steal", "off" (did you mean "steal"?)`},
		{incoming: "stael", wantErr: `feature.network.incoming.mode: invalid value "stael"`},
		{incoming: "42", wantErr: `feature.network.incoming: expected a mode ("mirror", "steal", "off"), a boolean or an object, got integer 42`},
	} {
		c, err := Parse([]byte("feature: {network: {incoming: "+tc.incoming+"}}"), "c.yaml")
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want %q", tc.incoming, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.incoming, err)
		case tc.wantWarn != "":
			if got := ErrorList(c.Warnings).Error(); !strings.Contains(got, tc.wantWarn) {
				t.Errorf("%s: warnings %q, want %q", tc.incoming, got, tc.wantWarn)
			}
		case len(c.Warnings) > 0:
			t.Errorf("%s: unexpected warnings %v", tc.incoming, ErrorList(c.Warnings))
		}
	}
}

func TestIncomingPorts(t *testing.T) {
	c := mustParse(t, "feature: {network: {incoming: {mode: steal, port_mapping: [[9333, 80]], ignore_ports: [9090]}}}")
	in := &c.Feature.Network.Incoming
	if in.RemotePort(9333) != 80 || in.RemotePort(8080) != 8080 {
		t.Error("port_mapping not applied")
	}
	if !in.Subscribes(80) || in.Subscribes(9090) {
		t.Error("ignore_ports not applied")
	}
	c = mustParse(t, "feature: {network: {incoming: {ports: [80]}}}")
	if !c.Feature.Network.Incoming.Subscribes(80) || c.Feature.Network.Incoming.Subscribes(81) {
		t.Error("ports not applied")
	}
	c = mustParse(t, "feature: {network: {incoming: off}}")
	if c.Feature.Network.Incoming.Subscribes(80) {
		t.Error("mode off subscribes")
	}
}

func TestIncomingFlush(t *testing.T) {
	for _, tc := range []struct {
		incoming string
		want     bool
	}{
		{"steal", true}, {"mirror", false},
		{"{mode: steal, flush_connections: false}", false}, {"{mode: mirror, flush_connections: true}", true},
	} {
		c := mustParse(t, "feature: {network: {incoming: "+tc.incoming+"}}")
		if got := c.Feature.Network.Incoming.Flush(); got != tc.want {
			t.Errorf("%s: Flush() = %v, want %v", tc.incoming, got, tc.want)
		}
	}
}

func TestTargetPaths(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "deployment/backend", want: "deployment/backend"},
		{in: "pod/backend-5d9c-xk2/container/app", want: "pod/backend-5d9c-xk2/container/app"},
		{in: "statefulset/db.v2", want: "statefulset/db.v2"},
		{in: "targetless", want: "targetless"},
		{in: "targetles", wantErr: `(did you mean "targetless"?)`},
		{in: "backend", wantErr: `expected KIND/NAME such as "pod/backend"`},
		{in: "deploy/backend", wantErr: `(did you mean "deployment"?)`},
		{in: "pod/a/b", wantErr: "expected KIND/NAME or KIND/NAME/container/CONTAINER"},
		{in: "pod/a/container/", wantErr: `invalid container name ""`},
		{in: "pod//container/c", wantErr: `invalid pod name ""`},
		{in: "pod/A", wantErr: `invalid pod name "A"`},
	} {
		p, err := ParseTargetPath(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || p.String() != tc.want {
			t.Errorf("%q: %q, %v", tc.in, p, err)
		}
	}
	for _, tc := range []struct{ text, wantErr string }{
		{"target: {path: {deployment: a, pod: b}}", "a target has one kind, deployment is already set"},
		{"target: {path: {container: a}}", "the target object needs one of the keys"},
		{"target: {path: {deploy: a}}", `unknown key target.path.deploy (did you mean "deployment"?)`},
		{"target: {path: deployment/a, name: b}", "unknown key target.name"},
	} {
		if _, err := Parse([]byte(tc.text), "c.yaml"); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: error %v, want %q", tc.text, err, tc.wantErr)
		}
	}
}

func TestAgentValidation(t *testing.T) {
	for _, tc := range []struct{ text, wantErr, wantWarn string }{
		{text: "agent: {ephemeral: true, namespace: x}", wantWarn: "agent.namespace: ignored for an ephemeral agent"},
		{text: "agent: {image_pull_secrets: [{}]}", wantErr: `agent.image_pull_secrets[0]: needs a "name"`},
		{text: "agent: {startup_timeout: 0}", wantErr: "agent.startup_timeout: must be at least 1 second"},
		{text: "agent: {tolerations: [{operator: Exists, value: x}]}", wantErr: `agent.tolerations[0].value: must be empty when the operator is "Exists"`},
		{text: "agent: {tolerations: [{effect: NoSchedule}]}", wantErr: `agent.tolerations[0]: a toleration without a key needs the operator "Exists"`},
		{text: "agent: {tolerations: [{key: a, operator: exists}]}", wantErr: `(did you mean "Exists"?)`},
		{text: "agent: {resources: {requests: {cpu: 0.5, memory: 64Mi}, limits: {cpu: '1', memory: 1e9}}}"},
		{text: "agent: {resources: {requests: {cpu: [1]}}}", wantErr: `agent.resources.requests.cpu: expected a quantity`},
	} {
		c, err := Parse([]byte(tc.text), "c.yaml")
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want %q", tc.text, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.text, err)
		case tc.wantWarn != "":
			if got := ErrorList(c.Warnings).Error(); !strings.Contains(got, tc.wantWarn) {
				t.Errorf("%s: warnings %q, want %q", tc.text, got, tc.wantWarn)
			}
		}
	}
}
