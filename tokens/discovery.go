package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// maxDiscoveryBytes bounds an OpenID Provider configuration document; real
// ones are a few KiB.
const maxDiscoveryBytes = 128 << 10

// wellKnownPath is appended to the issuer, less a trailing slash (OpenID
// Connect Discovery 1.0 §4).
const wellKnownPath = "/.well-known/openid-configuration"

// discoveryDoc is the part of an OpenID Provider configuration document
// (OpenID Connect Discovery 1.0 §3) a key source needs.
type discoveryDoc struct {
	Issuer  string   `json:"issuer"`
	JWKSURI string   `json:"jwks_uri"`
	Algs    []string `json:"id_token_signing_alg_values_supported"`
}

// parseDiscovery parses a configuration document strictly: one JSON object
// in valid UTF-8, no member name twice at any depth (a cache or proxy that
// keeps the first of two "issuer" members would read another document than
// we do), member names matched exactly (encoding/json alone would take
// "JWKS_URI" for jwks_uri, where every other reader sees an unknown
// member), issuer and jwks_uri non-empty strings, the algorithms a list of
// strings when present. Its errors never wrap a CredentialError: a bad
// document means the issuer's keys could not be loaded (503), never that a
// token is bad.
func parseDiscovery(data []byte) (*discoveryDoc, error) {
	var doc discoveryDoc
	var typeErr error
	err := walkJSON(data, func(name, raw []byte) error {
		var dst any
		switch string(name) {
		case "issuer":
			dst = &doc.Issuer
		case "jwks_uri":
			dst = &doc.JWKSURI
		case "id_token_signing_alg_values_supported":
			dst = &doc.Algs
		default:
			return nil
		}
		if string(raw) == "null" || json.Unmarshal(raw, dst) != nil {
			typeErr = fmt.Errorf("document member %q has the wrong type", name)
			return typeErr
		}
		return nil
	})
	switch {
	case typeErr != nil:
		return nil, typeErr
	case errors.Is(err, ErrDuplicateMember):
		return nil, errors.New("document has a member name twice")
	case err != nil:
		return nil, errors.New("document is not one JSON object in UTF-8")
	case doc.Issuer == "":
		return nil, errors.New("document has no issuer")
	case doc.JWKSURI == "":
		return nil, errors.New("document has no jwks_uri")
	}
	return &doc, nil
}

// discovered is what a refresh takes from an accepted document.
type discovered struct {
	jwksURI string
	logURI  string   // jwksURI redacted
	algs    []string // nil: the document lists none, the configured ones apply
}

// discovery is the state of an OIDC discovery key source; its key set is a
// remoteKeySet whose fetchKeys is fetchKeys.
type discovery struct {
	issuer  string
	docURL  string
	logURL  string
	algs    []string // configured
	policy  *hostPolicy
	client  *http.Client
	metrics *metrics
	log     *slog.Logger
	keys    *remoteKeySet
	// last is the last document whose key set loaded; used when the
	// document cannot be fetched. Only fetchKeys touches it, and
	// remoteKeySet never runs fetchKeys concurrently with itself.
	last *discovered
}

// validateDiscovery checks that the issuer is a URL discovery can start
// from; paths are relative to the issuer entry.
func validateDiscovery(ic *IssuerConfig) []error {
	if ic.Issuer == "" {
		return nil // reported as required
	}
	u, err := url.Parse(ic.Issuer)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return []error{errorf("issuer", "discovery needs the issuer to be an https URL")}
	case u.Scheme == "http" && !ic.AllowHTTP:
		return []error{errorf("issuer", "discovery needs an https issuer (allow_http permits http)")}
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.HasSuffix(ic.Issuer, "?") || strings.HasSuffix(ic.Issuer, "#"):
		return []error{errorf("issuer", "an issuer URL has no query, fragment or user info (OpenID Connect Core 1.0 §2)")}
	}
	return nil
}

func buildDiscovery(ic *IssuerConfig, d keySourceDeps) (keySource, error) {
	u, err := url.Parse(ic.Issuer)
	if err != nil {
		return nil, errors.New("issuer is not a URL")
	}
	docURL := strings.TrimSuffix(ic.Issuer, "/") + wellKnownPath
	disc := &discovery{
		issuer:  ic.Issuer,
		docURL:  docURL,
		logURL:  redactURL(docURL),
		algs:    ic.Algorithms,
		policy:  newHostPolicy(ic, "issuer's", u),
		metrics: d.metrics,
		log:     d.log,
	}
	disc.client = disc.policy.client(d.client)
	disc.keys = newRemoteKeySet(ic, d, disc.logURL)
	disc.keys.fetchKeys = disc.fetchKeys
	return disc.keys, nil
}

// fetchKeys fetches the document, then the key set it names. When the
// document cannot be had, the last good one's jwks_uri is used, so an
// outage of the discovery endpoint alone does not stop key rotation.
func (d *discovery) fetchKeys(ctx context.Context) (*keySnapshot, freshness, error) {
	doc, err := d.discover(ctx)
	if err != nil && ctx.Err() != nil {
		if !errors.Is(ctx.Err(), context.Canceled) { // timed out: the endpoint's failure
			d.metrics.discoveryFetch(d.issuer, err)
		}
		return nil, freshness{}, err
	}
	d.metrics.discoveryFetch(d.issuer, err)
	if err != nil {
		if d.last == nil {
			return nil, freshness{}, err
		}
		d.log.Warn("oidc discovery failed; using the last good jwks_uri",
			"issuer", d.issuer, "url", d.logURL, "jwks_uri", d.last.logURI, "error", err)
		doc = d.last
	}
	snap, fresh, err := d.keys.getJWKS(ctx, d.client, doc.jwksURI, doc.logURI)
	if err != nil {
		return nil, freshness{}, err
	}
	for _, k := range snap.all {
		k.algs = doc.algs
	}
	d.last = doc
	return snap, fresh, nil
}

// discover fetches and accepts the configuration document.
func (d *discovery) discover(ctx context.Context) (*discovered, error) {
	data, h, err := httpGet(ctx, d.client, "oidc discovery", d.docURL, d.logURL, "application/json", maxDiscoveryBytes)
	if err != nil {
		return nil, err
	}
	if err := checkJSONMediaType(h.Get("Content-Type")); err != nil {
		return nil, fmt.Errorf("oidc discovery %s: %w", d.logURL, err)
	}
	doc, err := parseDiscovery(data)
	if err != nil {
		return nil, fmt.Errorf("oidc discovery %s: %w", d.logURL, err)
	}
	out, err := d.accept(doc)
	if err != nil {
		return nil, fmt.Errorf("oidc discovery %s: %w", d.logURL, err)
	}
	return out, nil
}

// accept applies the trust rules to a parsed document: its issuer is the
// configured one, byte for byte (OpenID Connect Discovery 1.0 §4.3: no
// trailing-slash or case normalising); its jwks_uri is an absolute URL the
// host policy allows (https, the issuer's host or allowed_hosts); its
// algorithms, when listed, are intersected with the configured ones, and
// an empty intersection is refused ("none" is never among the configured).
func (d *discovery) accept(doc *discoveryDoc) (*discovered, error) {
	if doc.Issuer != d.issuer {
		return nil, fmt.Errorf("document names issuer %q, want %q exactly", clip(doc.Issuer), d.issuer)
	}
	u, err := url.Parse(doc.JWKSURI)
	if err != nil || !u.IsAbs() {
		return nil, errors.New("jwks_uri is not an absolute URL")
	}
	if err := d.policy.check(u); err != nil {
		return nil, fmt.Errorf("jwks_uri refused: %w", err)
	}
	out := &discovered{jwksURI: doc.JWKSURI, logURI: redactURL(doc.JWKSURI)}
	if doc.Algs != nil {
		out.algs = []string{}
		for _, a := range doc.Algs {
			if slices.Contains(d.algs, a) && !slices.Contains(out.algs, a) {
				out.algs = append(out.algs, a)
			}
		}
		if len(out.algs) == 0 {
			return nil, fmt.Errorf("id_token_signing_alg_values_supported shares no algorithm with the configured ones (%s)", strings.Join(d.algs, " "))
		}
	}
	return out, nil
}

// checkJSONMediaType requires a JSON media type (application/json or
// application/*+json), as OpenID Connect Discovery 1.0 §4.2 does: an HTML
// error page served with 200 is refused before it is parsed.
func checkJSONMediaType(ct string) error {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "application/json" && !(strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))) {
		return fmt.Errorf("content type %q, want application/json", clip(ct))
	}
	return nil
}

// clip shortens a value taken from a response for a message.
func clip(s string) string {
	const n = 128
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
