// Package guardian runs a child of the agent that outlives it and undoes
// what the agent did to the target (an iptables redirect, a freeze) when
// the agent dies, however it dies. The child is this binary re-executed
// with its job in an environment variable, holding the read end of a pipe
// whose write end only the agent has: the pipe closing without a goodbye
// byte means the agent is gone (SIGKILL, OOM kill, a crash), SIGTERM too.
//
// The agent's main calls each user's MaybeRun first thing, so that a
// re-executed agent becomes the guardian before parsing flags.
package guardian
