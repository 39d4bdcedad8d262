package config

import (
	"net/netip"
	"slices"

	"github.com/invopop/jsonschema"
	"gopkg.in/yaml.v3"
)

// DNSConfig decides which names are resolved by the cluster's DNS (through
// the target pod) and which locally. In the file it is a boolean or an
// object.
type DNSConfig struct {
	// Resolve names in the target pod's cluster.
	Enabled bool `json:"enabled"`

	// Which names resolve where: either "remote" (only these in the cluster) or "local" (these
	// locally, the rest in the cluster). Entries are host names ("db.internal", "*.corp",
	// "postgres" also matching "postgres.staging.svc.cluster.local"). Host names in
	// feature.network.outgoing.filter are added on the same side, so that a name resolves
	// where its connections go.
	Filter *TrafficFilter `json:"filter,omitempty"`
}

func (c *DNSConfig) decodeNode(d *decoder, n *yaml.Node, path string) {
	if isBool(n) {
		c.Enabled, _ = d.boolValue(n, path, "")
		return
	}
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, "a boolean or an object")
		return
	}
	d.decodeStruct(n, reflectValue(c), path)
}

// JSONSchemaExtend adds the boolean shorthand.
func (DNSConfig) JSONSchemaExtend(s *jsonschema.Schema) {
	withShorthands(s, &jsonschema.Schema{Type: "boolean"})
}

// dnsRules is the compiled DNS filter, outgoing names included.
type dnsRules struct {
	filtered bool
	local    bool
	names    []string
}

// DNSRoute decides where a query for name is resolved.
func (n *NetworkConfig) DNSRoute(name string) Route {
	if !n.DNS.Enabled {
		return RouteLocal
	}
	if !n.dns.filtered {
		return RouteRemote
	}
	matched := slices.ContainsFunc(n.dns.names, func(p string) bool { return matchHostname(p, name) })
	if matched == n.dns.local {
		return RouteLocal
	}
	return RouteRemote
}

// OutgoingRoute decides where a connection to dst goes; see
// OutgoingConfig.OutgoingRoute.
func (n *NetworkConfig) OutgoingRoute(proto Protocol, dst netip.AddrPort, hostnames []string) Route {
	return n.Outgoing.OutgoingRoute(proto, dst, hostnames)
}

func (c *DNSConfig) validate(d *decoder, outgoing *OutgoingConfig) dnsRules {
	const path = "feature.network.dns.filter"
	var rules dnsRules
	if c.Filter != nil {
		if !c.Enabled {
			d.warnf(path, CodeConflict, "has no effect: DNS is resolved locally (enabled is false)")
		}
		if !c.Filter.validate(d, path) {
			return rules
		}
		entries, local, key := c.Filter.entries()
		rules = dnsRules{filtered: true, local: local, names: []string{}}
		for i, s := range entries {
			at := indexKey(path+"."+key, i)
			f, err := ParseAddressFilter(s)
			switch {
			case err != nil:
				d.errorf(at, CodeValue, "%v", err)
				continue
			case f.Name == "":
				d.warnf(at, CodeIgnored, "doppel filters DNS queries by name; %q names no host and has no effect", s)
				continue
			case f.Port != 0 || f.Protocol != ProtocolAny:
				d.warnf(at, CodeIgnored, "a DNS query has no port or protocol; only the name of %q is used", s)
			}
			rules.names = append(rules.names, f.Name)
		}
	}
	if !c.Enabled || outgoing.Filter == nil {
		return rules
	}
	// Resolve a name where its connections go (mirrord does the same).
	var outNames []string
	for _, f := range outgoing.filter {
		if f.Name != "" {
			outNames = append(outNames, f.Name)
		}
	}
	if len(outNames) == 0 {
		return rules
	}
	switch {
	case !rules.filtered && outgoing.filterLocal:
		rules = dnsRules{filtered: true, local: true, names: outNames}
	case !rules.filtered:
		// Outgoing "remote" names already resolve remotely.
	case rules.local == outgoing.filterLocal:
		for _, name := range outNames {
			if !slices.Contains(rules.names, name) {
				rules.names = append(rules.names, name)
			}
		}
	default:
		for _, name := range outNames {
			if slices.Contains(rules.names, name) {
				d.warnf(path, CodeConflict, "%q is routed %s by feature.network.outgoing.filter but resolved %s here; its address may be meaningless on that side",
					name, sideName(outgoing.filterLocal), sideName(rules.local))
			}
		}
	}
	return rules
}

func sideName(local bool) string {
	if local {
		return "locally"
	}
	return "remotely"
}
