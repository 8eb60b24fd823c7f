// Command ext-authz is the authorization service an Istio ingress gateway's
// Envoy calls on every request (envoy.service.auth.v3.Authorization/Check).
//
//	ext-authz serve --config FILE       run the server
//	ext-authz check-config FILE         validate a config file
//	ext-authz check [flags]             send one Check to a running server
//	ext-authz token mint [flags]        mint development tokens
//	ext-authz version
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
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ext-authz:", err)
		os.Exit(exitCode(err))
	}
}

const usage = `usage:
  ext-authz serve --config FILE     run the server
  ext-authz check-config FILE...    validate config files
  ext-authz check [flags]           send one Check to a running server (-h for flags)
  ext-authz token mint [flags]      mint development tokens (-h for flags)
  ext-authz version                 print the version`

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg + "\n" + usage }

func exitCode(err error) int {
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// run executes one command; it is main without the process around it, so
// tests can call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return &usageError{"no command given"}
	}
	switch args[0] {
	case "serve":
		return serveCommand(ctx, args[1:], stderr, getenv)
	case "check-config":
		return checkConfigCommand(args[1:], stdout, getenv)
	case "check":
		return checkCommand(ctx, args[1:], stdout)
	case "token":
		return tokenCommand(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "ext-authz", versionString())
		return nil
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return &usageError{fmt.Sprintf("unknown command %q", args[0])}
}
