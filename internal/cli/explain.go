package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/extauthz"
)

// LocalDecider explains r under the config file at path, without a
// server. timeout bounds building what the config needs (reading key
// files, fetching JWKS).
type LocalDecider func(ctx context.Context, path string, r *authz.Request, timeout time.Duration) (authz.Explanation, error)

// checkLocalFlags are check's flags for deciding under a config file.
type checkLocalFlags struct {
	config  string
	explain bool
	admin   string
	peer    string
	context map[string]string
}

type contextFlags map[string]string

func (c contextFlags) String() string { return fmt.Sprint(map[string]string(c)) }

func (c contextFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not key=value", v)
	}
	c[k] = val
	return nil
}

func localFlags(fs *flag.FlagSet) *checkLocalFlags {
	lf := &checkLocalFlags{context: map[string]string{}}
	fs.StringVar(&lf.config, "config", "", "decide under this config file, without a server")
	fs.BoolVar(&lf.explain, "explain", false, "show how the request is decided, rule by rule: under --config, else by the running server's admin endpoint")
	fs.StringVar(&lf.admin, "admin", "", "with --explain and no --config: the server's admin address (default $"+EnvAdminAddress+", else 127.0.0.1:8081)")
	fs.StringVar(&lf.peer, "peer", "", "the gateway's direct peer address (default 127.0.0.1); with x-forwarded-for and xff_num_trusted_hops it gives the client address")
	fs.Var(contextFlags(lf.context), "context", "a context_extensions entry key=value of the gateway's route (repeatable)")
	return lf
}

// run decides req under the config file and prints the decision, or with
// --explain the explanation; the exit status is as for a server's answer.
func (lf *checkLocalFlags) run(ctx context.Context, name string, req *authv3.CheckRequest, timeout time.Duration, local LocalDecider, asJSON bool, stdout io.Writer) error {
	var ex authz.Explanation
	switch {
	case lf.config == "":
		var err error
		if ex, err = lf.remote(ctx, req, timeout); err != nil {
			return err
		}
	case local == nil:
		return &UsageError{Msg: "check: --config is not available in this build", Help: Hint(name)}
	default:
		r := extauthz.RequestFromProto(req)
		var err error
		if ex, err = local(ctx, lf.config, &r, timeout); err != nil {
			return err
		}
	}
	d := &ex.Decision
	switch {
	case asJSON:
		ex.Decision.Identity, ex.Decision.UpstreamHeaders = nil, nil // claim values and forwarded headers stay out
		b, err := json.MarshalIndent(struct {
			Code string
			*authz.Explanation
		}{d.Code.String(), &ex}, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, string(b))
	case lf.explain:
		fmt.Fprint(stdout, ex.String())
	default:
		fmt.Fprintf(stdout, "%s %d rule=%s reason=%s\n", map[bool]string{true: "ALLOW", false: "DENY"}[d.Allowed()], extauthz.HTTPStatus(d.Code), d.Rule, d.Reason)
	}
	if d.Allowed() {
		return nil
	}
	return &ExitError{Code: denialExit(int32(extauthz.HTTPStatus(d.Code)))}
}
