// Package protocol holds the helper <-> agent wire protocol. SPEC.md beside
// this file is the contract both sides are tested against.
package protocol

// Version is the wire protocol version a helper and an agent exchange in
// their hello. A peer refuses a version it does not speak.
const Version = 1
