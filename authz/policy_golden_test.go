package authz_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/authz/authztest"
	"github.com/ext-authz/ext-authz/tokens"
)

var updatePolicy = flag.Bool("update", false, "rewrite the expected decisions in testdata/policy/*.golden")

// policyCase is the input half of a testdata/policy golden file: a
// policy, the API keys its "keys" authenticator knows (x-api-key), and
// requests.
type policyCase struct {
	Policy      authz.Config `yaml:"policy"`
	XFFHops     int          `yaml:"xff_num_trusted_hops"`
	Credentials map[string]struct {
		Subject string         `yaml:"subject"`
		Scopes  []string       `yaml:"scopes"`
		Claims  map[string]any `yaml:"claims"`
	} `yaml:"credentials"`
	Requests []struct {
		Method            string            `yaml:"method"`
		Host              string            `yaml:"host"`
		Path              string            `yaml:"path"`
		Query             string            `yaml:"query"`
		Headers           map[string]string `yaml:"headers"`
		Peer              string            `yaml:"peer"`
		ContextExtensions map[string]string `yaml:"context_extensions"`
		SourcePrincipal   string            `yaml:"source_principal"`
	} `yaml:"requests"`
}

const goldenSeparator = "\n----------\n"

// TestPolicyGolden runs every testdata/policy/*.golden: the policy and
// requests above the separator, one decision per request below it
// (rewritten with -update). Conditions, CIDR and context_extensions
// matching and shadow rules are decided here end to end through Decide.
func TestPolicyGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/policy/*.golden")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".golden"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			in, want, _ := strings.Cut(string(data), goldenSeparator)
			got := decideGolden(t, in)
			if *updatePolicy {
				if err := os.WriteFile(file, []byte(in+goldenSeparator+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("decisions differ from %s (run with -update to accept)\ngot:\n%s\nwant:\n%s", file, got, want)
			}
		})
	}
}

func decideGolden(t *testing.T, in string) string {
	t.Helper()
	var pc policyCase
	dec := yaml.NewDecoder(strings.NewReader(in))
	dec.KnownFields(true)
	if err := dec.Decode(&pc); err != nil {
		t.Fatal(err)
	}
	keys := authztest.Credentials{}
	for k, c := range pc.Credentials {
		keys[k] = tokens.Principal{Subject: c.Subject, Issuer: "keys", Method: tokens.MethodAPIKey, Scopes: c.Scopes, Claims: c.Claims}
	}
	auths := []*authz.Authenticator{
		{Name: "keys", Source: authz.CredentialSource{Header: "x-api-key"}, ChallengeScheme: "ApiKey", Verifier: keys},
	}
	p, err := authz.NewPipeline(pc.Policy, auths, authz.Options{NewID: authztest.SequentialIDs(), XFFNumTrustedHops: pc.XFFHops})
	if err != nil {
		return "config error: " + err.Error() + "\n"
	}
	var b bytes.Buffer
	for _, rq := range pc.Requests {
		r := authz.Request{Method: rq.Method, Host: rq.Host, Path: rq.Path, Query: rq.Query, Headers: rq.Headers,
			PeerAddress: rq.Peer, ContextExtensions: rq.ContextExtensions, SourcePrincipal: rq.SourcePrincipal}
		if r.Method == "" {
			r.Method = "GET"
		}
		if r.Host == "" {
			r.Host = "api.example.com"
		}
		line := fmt.Sprintf("%s %s%s", r.Method, r.Host, r.Path)
		if r.Query != "" {
			line += "?" + r.Query
		}
		d := p.Decide(context.Background(), &r)
		fmt.Fprintf(&b, "%s => %s %s rule=%s", line, d.Code, d.Reason, d.Rule)
		if d.Identity != nil {
			fmt.Fprintf(&b, " subject=%s", d.Identity.Subject)
		}
		for _, s := range d.Shadow {
			fmt.Fprintf(&b, " shadow[%s]=%s:%s", s.Rule, s.Code, s.Reason)
		}
		b.WriteString("\n")
		// A denial by a condition never carries a claim value: the
		// reason is one of the fixed words.
		if strings.HasPrefix(d.Reason, "condition_") && !slices.Contains([]string{authz.ReasonConditionFailed, authz.ReasonConditionError, authz.ReasonConditionCost}, d.Reason) {
			t.Errorf("%s: reason %q is not a fixed word", line, d.Reason)
		}
	}
	return b.String()
}
