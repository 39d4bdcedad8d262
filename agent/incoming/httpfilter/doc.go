// Package httpfilter decides which HTTP requests a filtered-steal session
// takes. A Rule is what the helper sends on the wire (the http_filter of
// the user's configuration); Compile turns it into a Filter that the agent
// tests every request with, for HTTP/1 and HTTP/2 alike.
//
// Patterns are regexp2 regular expressions (backtracking, with look-around,
// like mirrord's fancy-regex), case-insensitive. Because a backtracking
// pattern can take exponential time on a hostile request, every test is
// bounded by MatchTimeout and a test that runs out counts as no match.
package httpfilter
