package main

import (
	"context"
	"fmt"
	"io"

	"github.com/ext-authz/ext-authz/internal/cli"
	"github.com/ext-authz/ext-authz/internal/generation"
	"github.com/ext-authz/ext-authz/internal/policytest"
)

const testUsage = `usage: ext-authz test [--config FILE] [--candidate] [--map-path FROM=TO]... [--base-dir DIR] [-v] FILE...

Runs policy test files: each names a config (or --config gives one for all)
and lists requests, with credentials minted from test keys, and the decision
the policy must make for each. The config is built as serve builds it, in
this process: no Redis (sessions come from the test file, rate limits are
compared as descriptors, never counted). Paths inside the config are read
relative to the working directory, as serve reads them. --candidate tests
the config's policy_candidate (docs/policy-rollout.md) instead of its policy.

Prints each failure and a summary. Exit status: 0 when every test passed,
1 when one failed or a file could not be run (its errors are
file:line: field.path: message), 2 for a usage error.
docs/policy-testing.md describes the file format.`

// testCommand runs `ext-authz test`.
func testCommand(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string) error {
	fs := cli.NewFlags("test")
	config := fs.String("config", "", "config file every test file runs against (default: the one each names)")
	var pm generation.PathMap
	fs.Var(&pm, "map-path", "read absolute paths of the config under FROM from directory TO instead (repeatable)")
	fs.StringVar(&pm.BaseDir, "base-dir", "", "read an absolute path /P of a config file field as DIR/P")
	verbose := fs.Bool("v", false, "print passing tests too")
	candidate := fs.Bool("candidate", false, "test the config's policy_candidate instead of its policy")
	if err := cli.ParseFlags(fs, testUsage, args, stdout); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return &cli.UsageError{Msg: "test needs at least one FILE", Help: cli.Hint(fs.Name())}
	}
	sum, err := policytest.Run(ctx, fs.Args(), policytest.Options{
		Config: *config, Remap: pm.Apply, Getenv: getenv, Verbose: *verbose, Candidate: *candidate,
	}, stdout)
	if err != nil {
		return err
	}
	if sum.Failed > 0 {
		return &cli.ExitError{Code: cli.ExitFailure, Msg: fmt.Sprintf("%d of %d tests failed", sum.Failed, sum.Failed+sum.Passed)}
	}
	return nil
}
