package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/invopop/jsonschema"
	"gopkg.in/yaml.v3"
)

// OutgoingConfig decides which outgoing connections leave from the target
// pod and which from the local machine. In the file it is true (the
// defaults), false (everything local) or an object.
type OutgoingConfig struct {
	// Make outgoing TCP connections from the target pod.
	TCP bool `json:"tcp"`

	// Send outgoing UDP from the target pod (DNS is governed by feature.network.dns).
	UDP bool `json:"udp"`

	// Keep connections to loopback addresses (127.0.0.0/8, ::1) local. doppel's default is
	// true; mirrord's is false, which sends them to the pod's own loopback (sidecars).
	IgnoreLocalhost bool `json:"ignore_localhost"`

	// Let a TCP connect to a destination the pod reached in the last 30 s return without
	// waiting for the pod's answer, saving a round trip to the agent on each new connection.
	// Should the pod refuse it after all, the local connection is reset (ECONNRESET on first
	// use) instead of failing with ECONNREFUSED. First connections always wait.
	EarlyConnect bool `json:"early_connect"`

	// Regular expressions of Unix socket paths to connect to in the target pod; other Unix
	// sockets stay local.
	UnixStreams StringList `json:"unix_streams,omitempty"`

	// Which connections go where, by protocol, address, subnet, host name and port: either
	// "remote" (only these through the pod, the rest local) or "local" (these local, the rest
	// through the pod). Entries look like "[tcp|udp://][NAME|IP|CIDR][:PORT]".
	Filter *TrafficFilter `json:"filter,omitempty"`

	// Compiled by validate.
	filter      []AddressFilter
	filterLocal bool
	unixStreams []*regexp.Regexp
}

func (o *OutgoingConfig) decodeNode(d *decoder, n *yaml.Node, path string) {
	if isBool(n) {
		on, _ := d.boolValue(n, path, "")
		o.TCP, o.UDP = on, on
		return
	}
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, "a boolean or an object")
		return
	}
	d.decodeStruct(n, reflectValue(o), path)
}

// JSONSchemaExtend adds the boolean shorthand.
func (OutgoingConfig) JSONSchemaExtend(s *jsonschema.Schema) {
	withShorthands(s, &jsonschema.Schema{Type: "boolean"})
}

// TrafficFilter is a list of filters under "remote" or under "local" (not both).
type TrafficFilter struct {
	// Only what matches goes through the target; everything else is local. A string or a list.
	Remote StringList `json:"remote,omitzero"`
	// What matches is local; everything else goes through the target. A string or a list.
	Local StringList `json:"local,omitzero"`
}

// JSONSchemaExtend requires exactly one of the two keys.
func (TrafficFilter) JSONSchemaExtend(s *jsonschema.Schema) {
	s.OneOf = []*jsonschema.Schema{{Required: []string{"remote"}}, {Required: []string{"local"}}}
}

// entries returns the filter's entries, whether they are local, and the
// key they are under.
func (f *TrafficFilter) entries() ([]string, bool, string) {
	if f.Local != nil {
		return f.Local, true, "local"
	}
	return f.Remote, false, "remote"
}

func (f *TrafficFilter) validate(d *decoder, path string) bool {
	if f.Remote != nil && f.Local != nil {
		d.errorf(path, CodeConflict, `use either "remote" or "local", not both`)
		return false
	}
	if f.Remote == nil && f.Local == nil {
		d.errorf(path, CodeValue, `needs "remote" or "local"`)
		return false
	}
	return true
}

// Route is where traffic goes.
type Route int

// The routes.
const (
	// RouteLocal leaves from the local machine.
	RouteLocal Route = iota
	// RouteRemote leaves from the target pod.
	RouteRemote
)

func (r Route) String() string {
	if r == RouteRemote {
		return "remote"
	}
	return "local"
}

// Protocol is a transport protocol.
type Protocol int

// The protocols; ProtocolAny appears in filters only.
const (
	ProtocolAny Protocol = iota
	ProtocolTCP
	ProtocolUDP
)

func (p Protocol) String() string {
	switch p {
	case ProtocolTCP:
		return "tcp"
	case ProtocolUDP:
		return "udp"
	}
	return "any"
}

// AddressFilter is one parsed filter entry: "[tcp|udp://][NAME|IP|CIDR][:PORT]".
type AddressFilter struct {
	Protocol Protocol
	// Prefix is set for IP and CIDR entries (an IP is a /32 or /128).
	Prefix netip.Prefix
	// Name is set for host name entries, lowercased; it may hold the
	// wildcards "*" and "?".
	Name string
	// Port 0 matches every port.
	Port uint16
	raw  string
}

func (f AddressFilter) String() string { return f.raw }

// ParseAddressFilter parses a filter entry such as "tcp://10.0.0.0/8:5432",
// "udp://:53", "[::1]:80", "db.staging.svc", "*.internal:443" or ":8080".
// An empty address matches every address; port 0 or no port, every port;
// an unspecified IP (0.0.0.0, ::), every IP.
func ParseAddressFilter(s string) (AddressFilter, error) {
	f := AddressFilter{raw: s}
	rest := s
	if proto, after, ok := strings.Cut(s, "://"); ok {
		switch strings.ToLower(proto) {
		case "tcp":
			f.Protocol = ProtocolTCP
		case "udp":
			f.Protocol = ProtocolUDP
		case "any":
		default:
			return f, fmt.Errorf(`invalid protocol %q: must be "tcp" or "udp"`, proto)
		}
		rest = after
	}
	host, port, err := splitHostPort(rest)
	if err != nil {
		return f, err
	}
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return f, fmt.Errorf("invalid port %q: must be 0 to 65535", port)
		}
		f.Port = uint16(n)
	}
	switch {
	case host == "":
	case strings.Contains(host, "/"):
		p, err := netip.ParsePrefix(host)
		if err != nil {
			if addr, _, _ := strings.Cut(host, "/"); !isIPLike(addr) {
				return f, fmt.Errorf("invalid subnet %q: a subnet needs an IP address, not a name", host)
			}
			return f, fmt.Errorf("invalid subnet %q: %v", host, cleanNetipError(err))
		}
		f.Prefix = p.Masked()
	default:
		if addr, err := netip.ParseAddr(host); err == nil {
			if addr.Zone() != "" {
				return f, fmt.Errorf("invalid address %q: zones are not supported", host)
			}
			f.Prefix = netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen())
		} else if isIPLike(host) {
			return f, fmt.Errorf("invalid IP address %q", host)
		} else if !hostPattern.MatchString(host) {
			return f, fmt.Errorf("invalid host name %q", host)
		} else {
			f.Name = strings.TrimSuffix(strings.ToLower(host), ".")
		}
	}
	return f, nil
}

var hostPattern = regexp.MustCompile(`^[A-Za-z0-9_*?]([A-Za-z0-9_*?.-]*[A-Za-z0-9_*?.])?$`)

// isIPLike reports whether s looks like an attempt at an IP address (only
// digits and dots, or contains ":"), so that "300.1.1.1" is reported as a
// bad IP rather than accepted as a host name.
func isIPLike(s string) bool {
	if strings.Contains(s, ":") {
		return true
	}
	return s != "" && strings.Trim(s, "0123456789.") == "" && strings.Contains(s, ".")
}

func cleanNetipError(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "): "); i >= 0 {
		return msg[i+3:]
	}
	return msg
}

// splitHostPort splits "host:port", "[v6]:port", "[v6/len]:port",
// "[v6]/len:port", ":port", a bare IPv6 address or prefix, and "host".
func splitHostPort(s string) (host, port string, err error) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", fmt.Errorf("invalid address %q: missing \"]\"", s)
		}
		host, rest := s[1:end], s[end+1:]
		if strings.HasPrefix(rest, "/") {
			length, after, _ := strings.Cut(rest[1:], ":")
			host += "/" + length
			if strings.HasPrefix(rest[1+len(length):], ":") {
				return host, after, nil
			}
			return host, "", nil
		}
		switch {
		case rest == "":
			return host, "", nil
		case strings.HasPrefix(rest, ":"):
			return host, rest[1:], nil
		}
		return "", "", fmt.Errorf("invalid address %q: unexpected %q after \"]\"", s, rest)
	}
	if strings.Count(s, ":") > 1 {
		// A bare IPv6 address or prefix has no port.
		return s, "", nil
	}
	host, port, _ = strings.Cut(s, ":")
	if strings.Contains(s, ":") && port == "" {
		return "", "", fmt.Errorf("invalid filter %q: missing port after \":\"", s)
	}
	return host, port, nil
}

// Match reports whether a connection with protocol proto to addr matches
// the filter. hostnames are the names the destination was resolved from
// (the names the cluster's DNS answered with); a name entry matches one of
// them, and "localhost" also matches loopback addresses.
func (f AddressFilter) Match(proto Protocol, addr netip.AddrPort, hostnames []string) bool {
	if f.Protocol != ProtocolAny && f.Protocol != proto {
		return false
	}
	if f.Port != 0 && f.Port != addr.Port() {
		return false
	}
	ip := addr.Addr().Unmap()
	switch {
	case f.Prefix.IsValid():
		if f.Prefix.Addr().IsUnspecified() && f.Prefix.Bits() == f.Prefix.Addr().BitLen() {
			return true
		}
		return f.Prefix.Contains(ip)
	case f.Name != "":
		if f.Name == "localhost" && ip.IsLoopback() {
			return true
		}
		for _, h := range hostnames {
			if matchHostname(f.Name, h) {
				return true
			}
		}
		return false
	}
	return true
}

// matchHostname matches a host name entry against a name: equal, a
// subdomain of it ("example.com" matches "api.example.com"), or the entry
// completed by a search domain ("postgres" matches
// "postgres.staging.svc.cluster.local"). With "*" or "?" the entry is a
// wildcard pattern on the whole name.
func matchHostname(pattern, host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" {
		return false
	}
	if strings.ContainsAny(pattern, "*?") {
		return wildcardMatch(pattern, host)
	}
	return host == pattern || strings.HasSuffix(host, "."+pattern) || strings.HasPrefix(host, pattern+".")
}

// OutgoingRoute decides where a connection (TCP) or datagram (UDP) to dst
// goes. hostnames are the names dst was resolved from, if known.
func (o *OutgoingConfig) OutgoingRoute(proto Protocol, dst netip.AddrPort, hostnames []string) Route {
	if proto == ProtocolTCP && !o.TCP || proto == ProtocolUDP && !o.UDP {
		return RouteLocal
	}
	ip := dst.Addr().Unmap()
	// Connecting to 0.0.0.0 or :: reaches the local host on Linux.
	if o.IgnoreLocalhost && (ip.IsLoopback() || ip.IsUnspecified()) {
		return RouteLocal
	}
	if o.Filter == nil {
		return RouteRemote
	}
	matched := false
	for _, f := range o.filter {
		if f.Match(proto, dst, hostnames) {
			matched = true
			break
		}
	}
	if matched == o.filterLocal {
		return RouteLocal
	}
	return RouteRemote
}

// UnixStreamRoute decides where a connection to a Unix socket path goes.
func (o *OutgoingConfig) UnixStreamRoute(path string) Route {
	if anyMatch(o.unixStreams, path) {
		return RouteRemote
	}
	return RouteLocal
}

func (o *OutgoingConfig) validate(d *decoder) {
	const path = "feature.network.outgoing"
	o.unixStreams = nil
	for i, p := range o.UnixStreams {
		re, err := compileRegex(p, false)
		if err != nil {
			d.errorf(indexKey(path+".unix_streams", i), CodeValue, "%v", err)
			continue
		}
		o.unixStreams = append(o.unixStreams, re)
	}
	o.filter, o.filterLocal = nil, false
	if o.Filter == nil || !o.Filter.validate(d, path+".filter") {
		return
	}
	entries, local, key := o.Filter.entries()
	o.filterLocal = local
	o.filter = []AddressFilter{}
	for i, s := range entries {
		f, err := ParseAddressFilter(s)
		if err != nil {
			d.errorf(indexKey(path+".filter."+key, i), CodeValue, "%v", err)
			continue
		}
		o.filter = append(o.filter, f)
	}
	if !o.TCP && !o.UDP {
		d.warnf(path+".filter", CodeConflict, "has no effect: tcp and udp are both off, all outgoing traffic is local")
	}
}
