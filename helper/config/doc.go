// Package config is doppel's configuration: the Go types of a .doppel/
// file (whose doc comments become the JSON schema's descriptions), its
// loading from JSON or YAML with errors that name the file, line, column
// and key path, its validation, and the rules the run applies: which
// environment variables the local process gets (EnvConfig.Filter), where
// each file is opened (FSConfig.Rules), where each connection and DNS
// query goes (NetworkConfig.OutgoingRoute, NetworkConfig.DNSRoute).
//
// The keys follow mirrord's configuration format, so that an existing
// .mirrord/*.json loads unchanged; docs/configuration.md is the reference.
package config
