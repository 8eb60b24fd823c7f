// Command ext-authz is the authorization service an Istio ingress gateway's
// Envoy calls on every request (envoy.service.auth.v3.Authorization/Check).
//
//	ext-authz serve --config FILE       run the server
//	ext-authz check-config FILE         validate a config file
//	ext-authz check [flags]             send one Check to a running server
//	ext-authz ratelimit [flags]         send one ShouldRateLimit to a running server
//	ext-authz token mint [flags]        mint development tokens
//	ext-authz token jwks [flags]        turn a public key into a JWK Set
//	ext-authz version                   print the version (also --version)
//
// This package is wiring only: it reads flags, the environment and the
// config file, builds the packages and runs them.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/ext-authz/ext-authz/internal/telemetry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	if err != nil {
		var ee *exitError
		if !errors.As(err, &ee) || ee.msg != "" {
			fmt.Fprintln(os.Stderr, "ext-authz:", err)
		}
		os.Exit(exitCode(err))
	}
}

const usage = `usage:
  ext-authz serve --config FILE     run the server
  ext-authz check-config FILE...    validate config files
  ext-authz check [flags]           send one Check to a running server
  ext-authz ratelimit [flags]       send one ShouldRateLimit to a running server
  ext-authz token mint [flags]      mint development tokens
  ext-authz token jwks [flags]      turn a public key into a JWK Set
  ext-authz version                 print the version (also --version)

Every command takes -h. Exit status: 0 success (check: allowed), 1 error,
2 usage error; check and ratelimit add 3 denied 401, 4 denied 403,
5 rate limited (429 / OVER_LIMIT), 6 denied with another status.`

// Exit statuses. check and ratelimit report a denial by its class, so a
// script can tell "the server said no" from "the server was not asked".
const (
	exitOK          = 0
	exitFailure     = 1 // transport, config or I/O error
	exitUsage       = 2 // a mistake in the command line
	exitUnauth      = 3 // denied 401: no or invalid credential
	exitForbidden   = 4 // denied 403: no rule, or the rule refused
	exitRateLimited = 5 // denied 429, or ShouldRateLimit OVER_LIMIT
	exitDeniedOther = 6 // denied with any other status (400, 413, 503, ...)
)

// usageError is a mistake in the command line: exit status 2. help is the
// command's own usage; empty means the top-level one.
type usageError struct{ msg, help string }

func (e *usageError) Error() string {
	if e.help != "" {
		return e.msg + "\n" + e.help
	}
	return e.msg + "\n" + usage
}

// exitError ends the process with code; msg, when set, goes to stderr
// (a denial's answer is already on stdout).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return fmt.Sprintf("exit status %d", e.code)
}

func exitCode(err error) int {
	var ue *usageError
	var ee *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ee):
		return ee.code
	}
	return exitFailure
}

// errHelp ends a command after it printed its help on stdout: exit 0.
var errHelp = errors.New("help shown")

// newFlags is a flag set that prints nothing itself: parseFlags prints
// -h on stdout and returns a parse error as a usageError.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args; -h and --help print synopsis and the flags on
// stdout and return errHelp.
func parseFlags(fs *flag.FlagSet, synopsis string, args []string, stdout io.Writer) error {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, flagsHelp(fs, synopsis))
		return errHelp
	case err != nil:
		return &usageError{msg: fs.Name() + ": " + err.Error(), help: hint(fs.Name())}
	}
	return nil
}

// hint points a usage error at the command's help.
func hint(name string) string { return "run 'ext-authz " + name + " -h' for its usage" }

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

// run executes one command; it is main without the process around it, so
// tests can call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	err := dispatch(ctx, args, stdout, stderr, getenv)
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return &usageError{msg: "no command given"}
	}
	switch args[0] {
	case "serve":
		return serveCommand(ctx, args[1:], stdout, stderr, getenv)
	case "check-config":
		return checkConfigCommand(args[1:], stdout, getenv)
	case "check":
		return checkCommand(ctx, args[1:], stdout, getenv)
	case "ratelimit":
		return rateLimitCommand(ctx, args[1:], stdout, getenv)
	case "token":
		return tokenCommand(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fs := newFlags("version")
		if err := parseFlags(fs, "usage: ext-authz version\n\nPrints the version.", args[1:], stdout); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return &usageError{msg: fmt.Sprintf("version: unexpected argument %q", fs.Arg(0)), help: hint("version")}
		}
		fmt.Fprintln(stdout, "ext-authz", telemetry.Version(version))
		return nil
	case "help", "-h", "--help", "-help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return &usageError{msg: fmt.Sprintf("unknown command %q", args[0])}
}
