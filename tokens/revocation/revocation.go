package revocation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Kind is what a record revokes.
type Kind uint8

// The kinds of record. The ids of sessions and API keys are SHA-256
// digests (32 raw bytes in a Query and a Record; lower-case hex in the
// store), never the credential itself.
const (
	KindJTI     Kind = iota // a JWT's jti
	KindSID                 // a JWT's (or ticket's, or session's) sid claim
	KindTicket              // a signed ticket's id
	KindSession             // SHA-256 of a session token
	KindAPIKey              // SHA-256 of an API key
	KindSubject             // a not-before epoch for a subject (optionally one app)
	numKinds
)

// numCredKinds are the kinds keyed by a credential id (all but subject).
const numCredKinds = int(KindSubject)

var kindNames = [numKinds]string{"jti", "sid", "ticket", "session", "api-key", "subject"}

func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// ParseKind reads a kind's name.
func ParseKind(s string) (Kind, bool) {
	for i, n := range kindNames {
		if n == s {
			return Kind(i), true
		}
	}
	return 0, false
}

// Digest reports whether the kind's ids are SHA-256 digests.
func (k Kind) Digest() bool { return k == KindSession || k == KindAPIKey }

// Record is one revocation.
type Record struct {
	Kind Kind
	// ID is the credential id, or for KindSubject the subject.
	ID string
	// App narrows a subject epoch to credentials issued to one app; empty:
	// every app.
	App string
	// At is in Unix seconds: for a credential record its expiry (0: never;
	// the record is kept until then), for a subject the epoch (credentials
	// issued before it are revoked).
	At int64
}

// Validate checks a record before it is written or applied.
func (r *Record) Validate() error {
	switch {
	case r.Kind >= numKinds:
		return errors.New("unknown record kind")
	case r.ID == "":
		return fmt.Errorf("%s record without an id", r.Kind)
	case len(r.ID) > MaxIDBytes || len(r.App) > MaxIDBytes:
		return fmt.Errorf("%s record id or app longer than %d bytes", r.Kind, MaxIDBytes)
	case r.Kind.Digest() && len(r.ID) != 32:
		return fmt.Errorf("%s record id must be a SHA-256 digest", r.Kind)
	case r.App != "" && r.Kind != KindSubject:
		return fmt.Errorf("%s record with an app (only subject epochs have one)", r.Kind)
	case r.At < 0:
		return fmt.Errorf("%s record with a negative time", r.Kind)
	case r.Kind == KindSubject && r.At == 0:
		return errors.New("subject record without an epoch")
	}
	return nil
}

// MaxIDBytes bounds an id, a subject and an app in a record.
const MaxIDBytes = 1024

// Query is what a Check asks about one credential. Empty ids are not
// looked up.
type Query struct {
	// Subject and App are the principal's; subject epochs apply to them.
	Subject, App string
	// IssuedAt is the credential's iat (Unix seconds); HasIssuedAt false
	// means it has none, and then any subject epoch revokes it (fail
	// closed: it cannot show it was issued after).
	IssuedAt    int64
	HasIssuedAt bool
	// NoEpoch exempts the credential from subject epochs (API keys: not
	// issued per login, revoked one by one).
	NoEpoch bool
	// IDs are the credential's ids by kind (KindSubject unused).
	IDs [numCredKinds]string
}

// Verdict is a Check's answer.
type Verdict struct {
	Revoked bool
	// By names the record that revoked it (a kind, and for an epoch the
	// time), for `token status`; empty when accepted.
	By string
}

// Source is the store the revocations come from (tokens/redis). Its
// methods are safe for concurrent use.
type Source interface {
	// Snapshot calls add for every live record in the store and returns
	// the replay log position it holds them as of: reading the log from
	// there misses nothing written since.
	Snapshot(ctx context.Context, now time.Time, add func(Record)) (cursor string, err error)
	// Read returns the records logged after cursor, waiting up to block
	// for the first one, and the new position. It returns ErrGap when the
	// log no longer holds everything after cursor (trimmed, or the store
	// lost it); the caller then takes a new Snapshot.
	Read(ctx context.Context, cursor string, block time.Duration) ([]Record, string, error)
	// Lookup answers q from the store directly (one round trip): the
	// fallback while the List cannot vouch for its memory.
	Lookup(ctx context.Context, q *Query) (Found, error)
}

// Found is what a Source holds about a Query.
type Found struct {
	// Cred is set when a credential record names one of the query's ids;
	// Kind is its kind.
	Cred bool
	Kind Kind
	// Epoch is the latest subject epoch for the query's subject (for
	// every app, or its app), in Unix seconds; 0: none.
	Epoch int64
}

// ErrGap means the replay log lost records after the reader's position.
var ErrGap = errors.New("revocation log: records after the position were trimmed")

// CompareIDs orders two log positions as Redis orders stream ids
// ("<ms>-<seq>"); malformed parts compare as 0.
func CompareIDs(a, b string) int {
	ams, aseq := splitID(a)
	bms, bseq := splitID(b)
	switch {
	case ams != bms:
		return cmpU(ams, bms)
	default:
		return cmpU(aseq, bseq)
	}
}

func splitID(s string) (uint64, uint64) {
	ms, seq, _ := strings.Cut(s, "-")
	return parseU(ms), parseU(seq)
}

func parseU(s string) uint64 {
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' || n > (1<<63)/10 {
			return 0
		}
		n = n*10 + uint64(c-'0')
	}
	return n
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
