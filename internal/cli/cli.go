package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
)

// Exit statuses. check and ratelimit report a denial by its class, so a
// script can tell "the server said no" from "the server was not asked".
const (
	ExitOK          = 0
	ExitFailure     = 1 // transport, config or I/O error
	ExitUsage       = 2 // a mistake in the command line
	ExitUnauth      = 3 // denied 401: no or invalid credential
	ExitForbidden   = 4 // denied 403: no rule, or the rule refused
	ExitRateLimited = 5 // denied 429, or ShouldRateLimit OVER_LIMIT
	ExitDeniedOther = 6 // denied with any other status (400, 413, 503, ...)
)

// Environment variables that override the config file's listen addresses;
// the clients (check, ratelimit) dial the gRPC one by default.
const (
	EnvGRPCAddress  = "EXT_AUTHZ_GRPC_ADDRESS"
	EnvAdminAddress = "EXT_AUTHZ_ADMIN_ADDRESS"
)

// UsageError is a mistake in the command line: exit status 2. Help is the
// command's own usage, or a hint where to find it; empty means the
// caller's top-level usage.
type UsageError struct{ Msg, Help string }

func (e *UsageError) Error() string {
	if e.Help != "" {
		return e.Msg + "\n" + e.Help
	}
	return e.Msg
}

// ExitError ends the process with Code; Msg, when set, goes to stderr (a
// denial's answer is already on stdout).
type ExitError struct {
	Code int
	Msg  string
}

func (e *ExitError) Error() string {
	if e.Msg != "" {
		return e.Msg
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

// ExitCode is the process exit status for a command's error.
func ExitCode(err error) int {
	var ue *UsageError
	var ee *ExitError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		return ExitUsage
	case errors.As(err, &ee):
		return ee.Code
	}
	return ExitFailure
}

// ErrHelp ends a command after it printed its help on stdout: exit 0.
var ErrHelp = errors.New("help shown")

// NewFlags is a flag set that prints nothing itself: ParseFlags prints -h
// on stdout and returns a parse error as a UsageError.
func NewFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// ParseFlags parses args; -h and --help print synopsis and the flags on
// stdout and return ErrHelp.
func ParseFlags(fs *flag.FlagSet, synopsis string, args []string, stdout io.Writer) error {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, flagsHelp(fs, synopsis))
		return ErrHelp
	case err != nil:
		return &UsageError{Msg: fs.Name() + ": " + err.Error(), Help: Hint(fs.Name())}
	}
	return nil
}

// Hint points a usage error at the command's help.
func Hint(name string) string { return "run 'ext-authz " + name + " -h' for its usage" }

func flagsHelp(fs *flag.FlagSet, synopsis string) string {
	var b bytes.Buffer
	b.WriteString(synopsis)
	b.WriteString("\n")
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		b.WriteString("\nflags:\n")
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return b.String()
}
