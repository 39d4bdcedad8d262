package cli

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/doppel-dev/doppel/helper/ide"
	"github.com/doppel-dev/doppel/internal/buildinfo"
)

type ideFlags struct {
	kube         kubeFlags
	agentAddress string
	agentToken   string
	logLevel     string
}

// NewIDECommand returns `doppel ide`, the backend of the IDE extensions:
// JSON-RPC 2.0 with Content-Length framing on stdin and stdout, the log on
// stderr (docs/ide-protocol.md).
func NewIDECommand(deps Deps) *cobra.Command {
	var f ideFlags
	cmd := &cobra.Command{
		Use:   "ide",
		Short: "Serve the IDE extensions (JSON-RPC on stdin/stdout)",
		Long: `Serve the VS Code extension or the JetBrains plugin: JSON-RPC 2.0 with
Content-Length framing on stdin and stdout (docs/ide-protocol.md), one
process per IDE window. Its log goes to stderr. Sessions end with it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runIDE(cmd.Context(), deps, f)
		},
	}
	fl := cmd.Flags()
	f.kube.register(fl)
	fl.StringVar(&f.agentAddress, "agent-address", "", "connect every session to this agent instead of starting one")
	fl.StringVar(&f.agentToken, "agent-token", "", "the session token the agent was started with")
	fl.MarkHidden("agent-address")
	fl.MarkHidden("agent-token")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level on stderr: debug, info, warn or error")
	return cmd
}

// stdio is the protocol's stream: stdin and stdout.
type stdioRWC struct {
	io.Reader
	io.Writer
}

func (s stdioRWC) Close() error {
	if c, ok := s.Reader.(io.Closer); ok {
		c.Close()
	}
	return nil
}

func runIDE(ctx context.Context, deps Deps, f ideFlags) error {
	if ctx == nil {
		ctx = context.Background()
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(deps.Streams.Err, &slog.HandlerOptions{Level: level})).With("part", "ide")
	in := deps.Streams.In
	if in == nil {
		in = os.Stdin
	}
	return ide.Serve(ctx, stdioRWC{Reader: in, Writer: deps.Streams.Out}, ide.Options{
		Log:          log,
		Version:      buildinfo.Get().Version,
		Kube:         f.kube.options(nil),
		AgentAddress: f.agentAddress,
		AgentToken:   f.agentToken,
	})
}
