package config

import (
	"strings"
	"testing"
)

func TestDNSRoute(t *testing.T) {
	for _, tc := range []struct {
		network string
		name    string
		want    Route
	}{
		{"{}", "postgres.staging.svc.cluster.local", RouteRemote},
		{"{}", "example.com", RouteRemote},
		{"{dns: false}", "postgres", RouteLocal},
		{"{dns: {enabled: false}}", "postgres", RouteLocal},
		{"false", "postgres", RouteLocal},
		// A local filter: names, subdomains, search-domain expansions, wildcards.
		{"{dns: {filter: {local: [corp.example.com, 'db-?.internal']}}}", "corp.example.com", RouteLocal},
		{"{dns: {filter: {local: [corp.example.com, 'db-?.internal']}}}", "git.corp.example.com.", RouteLocal},
		{"{dns: {filter: {local: [corp.example.com, 'db-?.internal']}}}", "db-1.internal", RouteLocal},
		{"{dns: {filter: {local: [corp.example.com, 'db-?.internal']}}}", "db-12.internal", RouteRemote},
		{"{dns: {filter: {local: [corp.example.com, 'db-?.internal']}}}", "postgres", RouteRemote},
		// A remote filter: only these in the cluster.
		{"{dns: {filter: {remote: [postgres, 'redis:6379']}}}", "postgres.staging.svc.cluster.local", RouteRemote},
		{"{dns: {filter: {remote: [postgres, 'redis:6379']}}}", "redis", RouteRemote},
		{"{dns: {filter: {remote: [postgres, 'redis:6379']}}}", "github.com", RouteLocal},
		// Host names of the outgoing filter resolve on the side their connections go.
		{"{outgoing: {filter: {local: ['docker.lala', ':53']}}}", "docker.lala", RouteLocal},
		{"{outgoing: {filter: {local: ['docker.lala', ':53']}}}", "api.staging", RouteRemote},
		{"{outgoing: {filter: {local: [docker.lala]}}, dns: {filter: {local: [other.lan]}}}", "docker.lala", RouteLocal},
		{"{outgoing: {filter: {local: [docker.lala]}}, dns: {filter: {local: [other.lan]}}}", "other.lan", RouteLocal},
		{"{outgoing: {filter: {remote: [db.internal]}}}", "github.com", RouteRemote},
		{"{outgoing: {filter: {remote: [db.internal]}}, dns: {filter: {remote: [cache.internal]}}}", "db.internal", RouteRemote},
		{"{outgoing: {filter: {remote: [db.internal]}}, dns: {filter: {remote: [cache.internal]}}}", "github.com", RouteLocal},
		{"{outgoing: {filter: {local: [docker.lala]}}, dns: false}", "anything", RouteLocal},
	} {
		c := mustParse(t, "feature: {network: "+tc.network+"}")
		if got := c.Feature.Network.DNSRoute(tc.name); got != tc.want {
			t.Errorf("%s: DNSRoute(%q) = %v, want %v", tc.network, tc.name, got, tc.want)
		}
	}
}

func TestDNSWarnings(t *testing.T) {
	for _, tc := range []struct {
		network string
		want    string
	}{
		{"{dns: {enabled: false, filter: {local: [a]}}}", "feature.network.dns.filter: has no effect"},
		{"{dns: {filter: {local: ['10.0.0.0/8']}}}", `feature.network.dns.filter.local[0]: doppel filters DNS queries by name; "10.0.0.0/8" names no host`},
		{"{dns: {filter: {local: ['db:5432']}}}", `only the name of "db:5432" is used`},
		{"{outgoing: {filter: {local: [db]}}, dns: {filter: {remote: [db]}}}", `"db" is routed locally by feature.network.outgoing.filter but resolved remotely here`},
		{"{outgoing: {filter: {remote: [db]}}, dns: false}", "feature.network.outgoing.filter.remote: names host names, but DNS is resolved locally"},
	} {
		c := mustParse(t, "feature: {network: "+tc.network+"}")
		if got := ErrorList(c.Warnings).Error(); !strings.Contains(got, tc.want) {
			t.Errorf("%s: warnings %q, want %q", tc.network, got, tc.want)
		}
	}
}
