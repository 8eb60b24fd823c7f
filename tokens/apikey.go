package tokens

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/ext-authz/ext-authz/internal/yamlfile"
)

// APIKeyConfig configures static API keys read from a file.
type APIKeyConfig struct {
	// File is a YAML file listing the keys (see APIKeyFile).
	File string `yaml:"file"`
	// Issuer is reported as the principal's issuer; default "api-keys".
	Issuer string `yaml:"issuer"`
	// MaxBytes rejects longer credentials unread; default 8 KiB.
	MaxBytes int `yaml:"max_bytes"`
}

// Validate checks the section (the file itself is read by NewAPIKeyVerifier).
func (c *APIKeyConfig) Validate() error {
	var errs []error
	if c.File == "" {
		errs = append(errs, yamlfile.Errorf("file", "required"))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, yamlfile.Errorf("max_bytes", "must not be negative"))
	}
	return errors.Join(errs...)
}

// APIKeyFile is the format of the keys file. Keys are stored as the hex
// SHA-256 of the key, so the file (and the ConfigMap or Secret holding it)
// never holds a usable credential:
//
//	keys:
//	  - subject: ci-bot
//	    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//	    app_id: ci
//	    scopes: [deploy]
//	    claims: {team: platform}
type APIKeyFile struct {
	Keys []APIKeyEntry `yaml:"keys"`
}

// APIKeyEntry is one key.
type APIKeyEntry struct {
	Subject string         `yaml:"subject"`
	SHA256  string         `yaml:"sha256"`
	AppID   string         `yaml:"app_id"`
	Scopes  []string       `yaml:"scopes"`
	Claims  map[string]any `yaml:"claims"`
}

// APIKeyVerifier accepts the keys listed in its file.
type APIKeyVerifier struct {
	issuer   string
	maxBytes int
	byHash   map[[sha256.Size]byte]*Principal
}

// NewAPIKeyVerifier reads cfg.File. Errors name the file and the field.
func NewAPIKeyVerifier(cfg APIKeyConfig) (*APIKeyVerifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var f APIKeyFile
	yf, err := yamlfile.Load(cfg.File, &f, func(string) string { return "" })
	if err != nil {
		return nil, yamlfile.Errorf("file", "%v", err)
	}
	v := &APIKeyVerifier{
		issuer:   cfg.Issuer,
		maxBytes: cfg.MaxBytes,
		byHash:   make(map[[sha256.Size]byte]*Principal, len(f.Keys)),
	}
	if v.issuer == "" {
		v.issuer = "api-keys"
	}
	if v.maxBytes == 0 {
		v.maxBytes = 8 << 10
	}
	var errs []error
	for i, k := range f.Keys {
		p := yamlfile.Index("keys", i)
		var h [sha256.Size]byte
		raw, err := hex.DecodeString(strings.TrimSpace(k.SHA256))
		switch {
		case k.Subject == "":
			errs = append(errs, yamlfile.Errorf(p+".subject", "required"))
		case err != nil || len(raw) != sha256.Size:
			errs = append(errs, yamlfile.Errorf(p+".sha256", "must be 64 hex digits (the SHA-256 of the key)"))
		}
		if len(raw) != sha256.Size {
			continue
		}
		copy(h[:], raw)
		if _, dup := v.byHash[h]; dup {
			errs = append(errs, yamlfile.Errorf(p+".sha256", "the same key is listed twice"))
			continue
		}
		v.byHash[h] = &Principal{
			Subject: k.Subject, Issuer: v.issuer, Method: MethodAPIKey,
			AppID: k.AppID, Scopes: k.Scopes, Claims: k.Claims,
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, yamlfile.Errorf("file", "%v", yf.Annotate(err))
	}
	return v, nil
}

// Verify looks the key up by its SHA-256. The lookup reveals nothing
// useful through timing: an attacker would have to control the hash.
func (v *APIKeyVerifier) Verify(_ context.Context, credential string) (Principal, error) {
	if len(credential) > v.maxBytes {
		return Principal{}, ErrTooLarge
	}
	p, ok := v.byHash[sha256.Sum256([]byte(credential))]
	if !ok {
		return Principal{}, ErrUnknownCredential
	}
	return *p, nil
}

// HashAPIKey returns the value to put in a keys file's sha256 field.
func HashAPIKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// String describes the verifier without any key material.
func (v *APIKeyVerifier) String() string {
	return fmt.Sprintf("api-key verifier (%d keys, issuer %s)", len(v.byHash), v.issuer)
}
