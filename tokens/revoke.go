package tokens

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
	"unsafe"

	"github.com/ext-authz/ext-authz/tokens/revocation"
)

// revIDs are what a verified credential can be revoked by, kept beside its
// principal in the cache: its own id (a JWT's jti, a ticket's id), its sid
// and its iat, compared with the subject's not-before epoch. The subject
// and app come from the principal.
type revIDs struct {
	id     string
	sid    string
	iat    int64
	hasIat bool
}

// revoked asks revs (nil: revocation is off) whether the credential with
// principal p and ids is revoked; idKind is the kind of ids.id, digest (when
// not nil) the SHA-256 of a session token or API key. It returns ErrRevoked,
// a could-not-decide error, or nil.
func revoked(ctx context.Context, revs *revocation.List, now time.Time, p *Principal, idKind revocation.Kind, ids *revIDs, digest *[sha256.Size]byte) error {
	if revs == nil {
		return nil
	}
	q := revocation.Query{Subject: p.Subject, App: p.AppID, IssuedAt: ids.iat, HasIssuedAt: ids.hasIat}
	if digest != nil {
		// The digest outlives the query (it is the caller's); no copy.
		q.IDs[idKind] = unsafe.String(&digest[0], len(digest))
		q.NoEpoch = idKind == revocation.KindAPIKey
	} else {
		q.IDs[idKind] = ids.id
	}
	q.IDs[revocation.KindSID] = ids.sid
	v, err := revs.Check(ctx, now, &q)
	switch {
	case err != nil:
		return fmt.Errorf("revocation check: %w", err)
	case v.Revoked:
		return ErrRevoked
	}
	return nil
}

// stringClaim is the claim name's value when it is a non-empty string.
func stringClaim(claims map[string]any, name string) string {
	s, _ := claims[name].(string)
	return s
}

// TicketID is the id a signed ticket is revoked by: its jti member when it
// has one, else "sha256:" and the hex SHA-256 of its payload segment (the
// signed claims as sent, which the strict checks make the only encoding of
// those bytes; never the signature, which an attacker might re-encode).
func TicketID(jti, payload string) string {
	if jti != "" {
		return jti
	}
	sum := sha256.Sum256(stringBytes(payload))
	return "sha256:" + hex.EncodeToString(sum[:])
}
