// Command ext-authz is the authorization service an Istio ingress gateway's
// Envoy calls on every request (envoy.service.auth.v3.Authorization/Check).
//
//	ext-authz serve --config FILE       run the server
//	ext-authz check-config FILE         validate a config file
//	ext-authz test FILE...              run policy test files
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
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/ext-authz/ext-authz/internal/cli"
	"github.com/ext-authz/ext-authz/internal/telemetry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	if err != nil {
		var ee *cli.ExitError
		if !errors.As(err, &ee) || ee.Msg != "" {
			fmt.Fprintln(os.Stderr, "ext-authz:", err)
		}
		os.Exit(cli.ExitCode(err))
	}
}

const usage = `usage:
  ext-authz serve --config FILE     run the server
  ext-authz check-config FILE...    validate config files
  ext-authz test FILE...            run policy test files (docs/policy-testing.md)
  ext-authz check [flags]           send one Check to a running server
  ext-authz ratelimit [flags]       send one ShouldRateLimit to a running server
  ext-authz token mint [flags]      mint development tokens
  ext-authz token jwks [flags]      turn a public key into a JWK Set
  ext-authz version                 print the version (also --version)

Every command takes -h. Exit status: 0 success (check: allowed), 1 error,
2 usage error (test: 1 when a test fails); check and ratelimit add 3 denied 401, 4 denied 403,
5 rate limited (429 / OVER_LIMIT), 6 denied with another status.`

// run executes one command; it is main without the process around it, so
// tests can call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	err := dispatch(ctx, args, stdout, stderr, getenv)
	var ue *cli.UsageError
	switch {
	case errors.Is(err, cli.ErrHelp):
		return nil
	case errors.As(err, &ue) && ue.Help == "":
		ue.Help = usage
	}
	return err
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return &cli.UsageError{Msg: "no command given"}
	}
	switch args[0] {
	case "serve":
		return serveCommand(ctx, args[1:], stdout, stderr, getenv)
	case "check-config":
		return checkConfigCommand(args[1:], stdout, getenv)
	case "test":
		return testCommand(ctx, args[1:], stdout, getenv)
	case "check":
		return cli.CheckLocal(ctx, args[1:], stdout, getenv, localDecider(getenv))
	case "ratelimit":
		return cli.RateLimit(ctx, args[1:], stdout, getenv)
	case "token":
		return cli.Token(ctx, args[1:], stdout)
	case "version", "--version", "-version":
		fs := cli.NewFlags("version")
		if err := cli.ParseFlags(fs, "usage: ext-authz version\n\nPrints the version.", args[1:], stdout); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return &cli.UsageError{Msg: fmt.Sprintf("version: unexpected argument %q", fs.Arg(0)), Help: cli.Hint("version")}
		}
		fmt.Fprintln(stdout, "ext-authz", telemetry.Version(version))
		return nil
	case "help", "-h", "--help", "-help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return &cli.UsageError{Msg: fmt.Sprintf("unknown command %q", args[0])}
}
