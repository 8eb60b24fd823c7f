package tokens

import "errors"

// ErrInvalid matches every error that means "the credential was checked and
// is not acceptable": errors.Is(err, ErrInvalid) holds for each
// *CredentialError. Any other error from a verifier means it could not decide
// (a store or key source was unavailable), and callers must not treat it as a
// bad credential.
var ErrInvalid = errors.New("invalid credential")

// CredentialError is a rejected credential. Reason is a short, fixed,
// machine-readable word that is safe to show to the client, to log and to use
// as a metric label: it never contains any part of the credential.
type CredentialError struct {
	Reason string
}

func (e *CredentialError) Error() string { return "invalid credential: " + e.Reason }

// Is makes every CredentialError match ErrInvalid.
func (e *CredentialError) Is(target error) bool { return target == ErrInvalid }

// The reasons a credential is rejected. Verifiers return these (wrapped with
// context if they like); callers match them with errors.Is and read the
// reason with Reason.
var (
	ErrMissing           = &CredentialError{Reason: "missing_credential"}
	ErrMalformed         = &CredentialError{Reason: "malformed"}
	ErrTooLarge          = &CredentialError{Reason: "too_large"}
	ErrBadSignature      = &CredentialError{Reason: "bad_signature"}
	ErrUnsupportedAlg    = &CredentialError{Reason: "unsupported_algorithm"}
	ErrUnknownKey        = &CredentialError{Reason: "unknown_key"}
	ErrRetiredKey        = &CredentialError{Reason: "retired_key"}
	ErrExpired           = &CredentialError{Reason: "expired"}
	ErrNotYetValid       = &CredentialError{Reason: "not_yet_valid"}
	ErrIssuedInFuture    = &CredentialError{Reason: "issued_in_future"}
	ErrWrongIssuer       = &CredentialError{Reason: "wrong_issuer"}
	ErrWrongAudience     = &CredentialError{Reason: "wrong_audience"}
	ErrRevoked           = &CredentialError{Reason: "revoked"}
	ErrUnknownCredential = &CredentialError{Reason: "unknown_credential"}

	// The strict JOSE checks of jose.go (also applied to UDB tickets where
	// they fit): a segment that is not canonical base64url, a duplicate
	// member name in a header, claims set or payload, a JOSE "crit" or
	// "b64" header, and an exp, nbf or iat that is not a NumericDate in
	// range.
	ErrNonCanonicalEncoding = &CredentialError{Reason: "non_canonical_encoding"}
	ErrDuplicateMember      = &CredentialError{Reason: "duplicate_member"}
	ErrUnsupportedExtension = &CredentialError{Reason: "unsupported_extension"}
	ErrBadNumericDate       = &CredentialError{Reason: "bad_numeric_date"}
)

// Reason returns the machine-readable reason of a rejected credential, or ""
// when err is not a CredentialError.
func Reason(err error) string {
	var ce *CredentialError
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return ""
}
