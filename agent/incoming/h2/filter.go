package h2

import (
	"net/http"
	"slices"
	"strings"
)

// FilterFields returns what an HTTP filter matches on: the method, the path and query as
// received (split at the first '?'; still percent-encoded), and the header fields with lowercase
// names (as they are on the wire in HTTP/2), sorted by name, values of one name in the order
// received. The :authority comes first as a "host" field, so a filter on the Host header matches
// HTTP/1 and HTTP/2 alike. Cookie fields arrive joined into one "; "-separated value, and
// "expect: 100-continue" is not among them (net/http's server takes both).
func FilterFields(r *http.Request) (method, path, rawQuery string, header [][2]string) {
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	path, rawQuery, _ = strings.Cut(uri, "?")

	type field struct{ lower, key string }
	fields := make([]field, 0, len(r.Header))
	n := 0
	for k, vv := range r.Header {
		if strings.HasPrefix(k, ":") { // ":protocol" of an extended CONNECT
			continue
		}
		fields = append(fields, field{strings.ToLower(k), k})
		n += len(vv)
	}
	slices.SortFunc(fields, func(a, b field) int { return strings.Compare(a.lower, b.lower) })
	header = make([][2]string, 0, n+1)
	if r.Host != "" {
		header = append(header, [2]string{"host", r.Host})
	}
	for _, f := range fields {
		for _, v := range r.Header[f.key] {
			header = append(header, [2]string{f.lower, v})
		}
	}
	return r.Method, path, rawQuery, header
}
