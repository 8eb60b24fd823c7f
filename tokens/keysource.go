package tokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

// keySource supplies one issuer's verification keys: a local JWKS file, a
// JWKS URL, an OIDC discovery document. An issuer searches its sources in
// the order of keySourceKinds and uses the first key found.
//
// Key returns the key for kid ("" when the token names none). A kid the
// source does not hold is ErrUnknownKey (the token is rejected, 401); any
// other error means the source could not decide (no keys loaded yet, or the
// caller gave up while a refetch ran) and the request is answered 503.
//
// Beyond Key, the verifier discovers what a source can do by type
// assertion, as the service does for verifiers:
//
//   - Run(ctx) error: background refresh, run by JWTVerifier.Run until ctx
//     ends; it returns nil then.
//   - Ready() error: nil once the source has keys. A source without Ready
//     is ready when built (a file is read by build, or build fails).
type keySource interface {
	Key(ctx context.Context, kid string) (*verificationKey, error)
}

// keySourceKind is one entry of the key-source table: the IssuerConfig
// fields that select and configure it, how to validate them, and how to
// build the source.
type keySourceKind struct {
	// field is the yaml field that selects the kind, for messages and
	// error paths.
	field string
	// configured reports whether ic selects this kind.
	configured func(ic *IssuerConfig) bool
	// validate checks the kind's fields without reading files or the
	// network; paths are relative to the issuer entry. Nil: nothing to
	// check beyond configured.
	validate func(ic *IssuerConfig) []error
	// files are the local files the source reads (nil: none), so the
	// service watches them and rebuilds the verifier when they change.
	files func(ic *IssuerConfig) []string
	// remote kinds fetch over the network and refresh in the background;
	// an issuer has at most one (two would race each other for the same
	// issuer's keys with different rules).
	remote bool
	// build makes the source. It may read local files; it fetches nothing
	// and starts no goroutine. Its error is reported under field.
	build func(ic *IssuerConfig, d keySourceDeps) (keySource, error)
}

// keySourceDeps are what a kind's build may use.
type keySourceDeps struct {
	client  *http.Client
	metrics *metrics
	log     *slog.Logger
	now     func() time.Time
}

// keySourceKinds are the key-source kinds, in lookup order: a local file
// first (no I/O on the request path), then the remote one.
//
// Adding a kind: its fields in IssuerConfig, an entry here, a type that
// implements keySource (and Run/Ready when it has background state).
var keySourceKinds = []keySourceKind{
	{
		field:      "jwks_file",
		configured: func(ic *IssuerConfig) bool { return ic.JWKSFile != "" },
		files:      func(ic *IssuerConfig) []string { return []string{ic.JWKSFile} },
		build: func(ic *IssuerConfig, _ keySourceDeps) (keySource, error) {
			snap, err := readJWKSFile(ic.JWKSFile)
			if err != nil {
				return nil, err
			}
			return (*fileKeySource)(snap), nil
		},
	},
	{
		field:      "jwks_url",
		configured: func(ic *IssuerConfig) bool { return ic.JWKSURL != "" },
		validate:   validateJWKSURL,
		remote:     true,
		build:      buildJWKSURL,
	},
	{
		field:      "discovery",
		configured: func(ic *IssuerConfig) bool { return ic.Discovery },
		validate:   validateDiscovery,
		remote:     true,
		build:      buildDiscovery,
	},
}

// keySourceFields names the kinds' selecting fields, for messages.
func keySourceFields(remoteOnly bool) string {
	var names []string
	for _, k := range keySourceKinds {
		if k.remote || !remoteOnly {
			names = append(names, k.field)
		}
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// validateKeySources checks that ic selects at least one kind and at most
// one remote kind, and each selected kind's fields; p is the issuer
// entry's path.
func validateKeySources(ic *IssuerConfig, p string) []error {
	var errs []error
	var set, remote []string
	for _, k := range keySourceKinds {
		if !k.configured(ic) {
			continue
		}
		set = append(set, k.field)
		if k.remote {
			remote = append(remote, k.field)
		}
		if k.validate != nil {
			for _, err := range k.validate(ic) {
				errs = append(errs, yamlfile.Wrap(p, err))
			}
		}
	}
	switch {
	case len(set) == 0:
		errs = append(errs, errorf(p, "set a key source: %s (a file may be combined with one of the others)", keySourceFields(false)))
	case len(remote) > 1:
		errs = append(errs, errorf(p, "set only one of %s (found %s)", keySourceFields(true), strings.Join(remote, ", ")))
	}
	return errs
}

// buildKeySources builds ic's sources in lookup order; p is the issuer
// entry's path.
func buildKeySources(ic *IssuerConfig, p string, d keySourceDeps) ([]keySource, error) {
	var out []keySource
	var errs []error
	for _, k := range keySourceKinds {
		if !k.configured(ic) {
			continue
		}
		src, err := k.build(ic, d)
		if err != nil {
			errs = append(errs, errorf(p+"."+k.field, "%v", err))
			continue
		}
		out = append(out, src)
	}
	return out, errors.Join(errs...)
}

// fileKeySource is a JWKS file read once when the verifier is built.
type fileKeySource keySnapshot

var _ keySource = (*fileKeySource)(nil)

func (f *fileKeySource) Key(_ context.Context, kid string) (*verificationKey, error) {
	if k := (*keySnapshot)(f).find(kid); k != nil {
		return k, nil
	}
	return nil, ErrUnknownKey
}

// FileKeyIDs are the kids of the keys the verifier read from issuer's
// jwks_file when it was built, in the file's order ("" for a key without
// one): names for a reload log, never key material. It reads the loaded
// keys, not the file, which may have changed since. Nil when the issuer is
// not configured or has no file.
func (v *JWTVerifier) FileKeyIDs(issuer string) []string {
	is := v.issuers[issuer]
	if is == nil {
		return nil
	}
	var out []string
	for _, src := range is.sources {
		if f, ok := src.(*fileKeySource); ok {
			for _, k := range f.all {
				out = append(out, k.kid)
			}
		}
	}
	return out
}

// key finds the key for kid in the issuer's sources, in order. When no
// source holds it, a source that could not decide makes the answer
// could-not-decide; otherwise the kid is unknown.
func (is *issuer) key(ctx context.Context, kid string) (*verificationKey, error) {
	var undecidedErr error
	for _, src := range is.sources {
		k, err := src.Key(ctx, kid)
		if k != nil {
			return k, nil
		}
		var ce *CredentialError
		if err != nil && !errors.As(err, &ce) && undecidedErr == nil {
			undecidedErr = err
		}
	}
	if undecidedErr != nil {
		return nil, &undecided{err: undecidedErr}
	}
	return nil, ErrUnknownKey
}

// ready reports whether any source of the issuer has keys.
func (is *issuer) ready() bool {
	for _, src := range is.sources {
		r, ok := src.(interface{ Ready() error })
		if !ok || r.Ready() == nil {
			return true
		}
	}
	return false
}

// readJWKSFile reads and parses a local JWK Set.
func readJWKSFile(path string) (*keySnapshot, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	snap, _, err := parseJWKS(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return snap, nil
}

// Files are the local files the configured key sources read, for the
// service to watch: a changed file is a changed verifier.
func (c *JWTConfig) Files() []string {
	var out []string
	for i := range c.Issuers {
		ic := &c.Issuers[i]
		for _, k := range keySourceKinds {
			if k.files != nil && k.configured(ic) {
				out = append(out, k.files(ic)...)
			}
		}
	}
	return out
}
