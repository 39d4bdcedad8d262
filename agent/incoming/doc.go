// Package incoming serves the target pod's incoming traffic to sessions:
// subscriptions per port (mirror, steal, filtered steal), the redirect of
// the subscribed ports to the agent's listener (package redirect), and
// each redirected connection's way: passed through to the original server,
// copied to mirroring sessions, handed to a stealing session, or split
// into HTTP requests routed by the sessions' filters (packages http1, h2,
// httpfilter).
//
// Several sessions (developers) may subscribe one port: any number of
// mirrors and filtered steals, at most one unfiltered steal. A request
// that matches several filters goes to the earliest subscriber.
package incoming
