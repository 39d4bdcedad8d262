package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary files to Parse: it must never panic or hang,
// every failure must be a located ErrorList, and what it accepts must
// encode to a file that parses to the same configuration. The seed corpus
// is in testdata/fuzz/FuzzParse and testdata/*/.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.*")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error %T %v is not an ErrorList", err, err)
			}
			for _, e := range list {
				if e.File != "fuzz.yaml" && e.Code != CodeIO && e.Code != CodeSyntax {
					t.Fatalf("error without the file: %v", e)
				}
				if e.Message == "" && e.Code != CodeUnknownKey {
					t.Fatalf("error without a message: %#v", e)
				}
			}
			return
		}
		encoded, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("encoding: %v", err)
		}
		if len(encoded) <= maxFileSize {
			again, err := Parse(encoded, "again.json")
			if err != nil {
				t.Fatalf("the encoding does not parse: %v\n%s", err, encoded)
			}
			reencoded, _ := json.Marshal(again)
			if !bytes.Equal(encoded, reencoded) {
				t.Fatalf("round trip changed the config:\n%s\n%s", encoded, reencoded)
			}
		}
		// The compiled rules work on whatever was accepted.
		c.Feature.FS.Rules(testHost).Resolve("/home/dev/.aws/x", true)
		c.Feature.Network.OutgoingRoute(ProtocolTCP, netip.MustParseAddrPort("10.0.0.1:80"), []string{"db.internal"})
		c.Feature.Network.DNSRoute("db.internal")
		c.Feature.Env.Filter(map[string]string{"A": "1", "PATH": "/x"}, []string{"PATH=/usr/bin"})
		c.SkipsProcess("/usr/bin/go")
	})
}
