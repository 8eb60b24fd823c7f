package redis

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ext-authz/ext-authz/tokens/revocation"
)

// DefaultRevocationPrefix names the revocation keys; see docs/tokens.md.
const DefaultRevocationPrefix = "udb:revocation"

// RevocationOptions configure a RevocationStore; the zero value works.
type RevocationOptions struct {
	// Prefix names the keys, inside a hash tag so that all of them share
	// one Redis Cluster slot: {<prefix>}:credentials, :subjects,
	// :subject-apps and :log. Default DefaultRevocationPrefix.
	Prefix string
	// MaxLen bounds the log (XADD MAXLEN ~); default 100000. A replica
	// further behind than that reloads every record.
	MaxLen int64
	// Retention is how long a subject epoch is kept (writers trim older
	// ones); default revocation.DefaultRetention.
	Retention time.Duration
	// BatchSize is the most log entries one read returns; default 1000.
	BatchSize int64
}

// RevocationStore reads and writes revocation records in Redis: two sorted
// sets of records (credentials scored by their expiry, subject epochs
// scored by the epoch) and a stream that logs every write, which replicas
// follow with XREAD BLOCK from the last id they saw.
type RevocationStore struct {
	client                     goredis.UniversalClient
	opts                       RevocationOptions
	creds, subjects, apps, log string
}

var _ revocation.Source = (*RevocationStore)(nil)

// NewRevocationStore returns a store over client (standalone, sentinel or
// cluster); the client is the caller's to close.
func NewRevocationStore(client goredis.UniversalClient, opts RevocationOptions) *RevocationStore {
	if opts.Prefix == "" {
		opts.Prefix = DefaultRevocationPrefix
	}
	if opts.MaxLen <= 0 {
		opts.MaxLen = 100000
	}
	if opts.Retention <= 0 {
		opts.Retention = revocation.DefaultRetention
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1000
	}
	tag := "{" + opts.Prefix + "}"
	return &RevocationStore{
		client: client, opts: opts,
		creds: tag + ":credentials", subjects: tag + ":subjects", apps: tag + ":subject-apps", log: tag + ":log",
	}
}

// Keys are the store's keys: credentials, subjects, subject-apps, log.
func (s *RevocationStore) Keys() [4]string { return [4]string{s.creds, s.subjects, s.apps, s.log} }

// credMember is a credential record's member: "<kind>:<id>", with the id of
// a digest kind in lower-case hex.
func credMember(k revocation.Kind, id string) string {
	if k.Digest() {
		id = hex.EncodeToString([]byte(id))
	}
	return k.String() + ":" + id
}

// appMember is a per-app subject epoch's member: the JSON array
// [subject, app].
func appMember(subject, app string) string {
	b, _ := json.Marshal([2]string{subject, app}) // strings: never fails
	return string(b)
}

func score(at int64) float64 {
	if at == 0 {
		return math.Inf(1)
	}
	return float64(at)
}

// Revoke writes r: its record (an existing later expiry or epoch wins) and
// a log entry, in one MULTI/EXEC, and trims records that no longer matter
// (credentials expired more than revocation.ExpiryGrace ago, epochs older
// than the retention).
func (s *RevocationStore) Revoke(ctx context.Context, now time.Time, r revocation.Record) error {
	if err := r.Validate(); err != nil {
		return err
	}
	values := []any{"k", r.Kind.String(), "id", r.ID, "t", strconv.FormatInt(r.At, 10)}
	if r.Kind.Digest() {
		values[3] = hex.EncodeToString([]byte(r.ID))
	}
	if r.App != "" {
		values = append(values, "app", r.App)
	}
	epochCut := strconv.FormatInt(now.Add(-s.opts.Retention).Unix(), 10)
	_, err := s.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		switch {
		case r.Kind != revocation.KindSubject:
			p.ZAddGT(ctx, s.creds, goredis.Z{Score: score(r.At), Member: credMember(r.Kind, r.ID)})
		case r.App == "":
			p.ZAddGT(ctx, s.subjects, goredis.Z{Score: float64(r.At), Member: r.ID})
		default:
			p.ZAddGT(ctx, s.apps, goredis.Z{Score: float64(r.At), Member: appMember(r.ID, r.App)})
		}
		p.XAdd(ctx, &goredis.XAddArgs{Stream: s.log, MaxLen: s.opts.MaxLen, Approx: true, Values: values})
		p.ZRemRangeByScore(ctx, s.creds, "-inf", "("+strconv.FormatInt(now.Add(-revocation.ExpiryGrace).Unix(), 10))
		p.ZRemRangeByScore(ctx, s.subjects, "-inf", "("+epochCut)
		p.ZRemRangeByScore(ctx, s.apps, "-inf", "("+epochCut)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis revoke: %w", err)
	}
	return nil
}

// Snapshot reads every record (ZSCAN, so a record present throughout is
// seen even while writers add and trim) after noting the log's last id.
func (s *RevocationStore) Snapshot(ctx context.Context, now time.Time, add func(revocation.Record)) (string, error) {
	cursor := "0-0"
	info, err := s.client.XInfoStream(ctx, s.log).Result()
	switch {
	case err == nil:
		cursor = info.LastGeneratedID
	case !strings.Contains(err.Error(), "no such key"):
		return "", fmt.Errorf("redis XINFO STREAM: %w", err)
	}
	credCut := float64(now.Add(-revocation.ExpiryGrace).Unix())
	err = s.scan(ctx, s.creds, func(member string, sc float64) {
		if sc < credCut {
			return
		}
		kind, id, ok := strings.Cut(member, ":")
		k, known := revocation.ParseKind(kind)
		if !ok || !known || k == revocation.KindSubject {
			add(revocation.Record{Kind: 255}) // counted as invalid
			return
		}
		if k.Digest() {
			raw, err := hex.DecodeString(id)
			if err != nil {
				add(revocation.Record{Kind: 255})
				return
			}
			id = string(raw)
		}
		add(revocation.Record{Kind: k, ID: id, At: atOf(sc)})
	})
	if err == nil {
		err = s.scan(ctx, s.subjects, func(member string, sc float64) {
			add(revocation.Record{Kind: revocation.KindSubject, ID: member, At: atOf(sc)})
		})
	}
	if err == nil {
		err = s.scan(ctx, s.apps, func(member string, sc float64) {
			var pair [2]string
			if json.Unmarshal([]byte(member), &pair) != nil || pair[1] == "" {
				add(revocation.Record{Kind: 255})
				return
			}
			add(revocation.Record{Kind: revocation.KindSubject, ID: pair[0], App: pair[1], At: atOf(sc)})
		})
	}
	if err != nil {
		return "", err
	}
	return cursor, nil
}

func atOf(sc float64) int64 {
	if math.IsInf(sc, 1) || sc >= math.MaxInt64 {
		return 0
	}
	return int64(sc)
}

func (s *RevocationStore) scan(ctx context.Context, key string, f func(member string, score float64)) error {
	var cur uint64
	for {
		kv, next, err := s.client.ZScan(ctx, key, cur, "", 1000).Result()
		if err != nil {
			return fmt.Errorf("redis ZSCAN: %w", err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			sc, err := strconv.ParseFloat(kv[i+1], 64)
			if err != nil {
				continue
			}
			f(kv[i], sc)
		}
		if next == 0 {
			return nil
		}
		cur = next
	}
}

// Read returns the log entries after cursor (XREAD BLOCK), then checks
// with XINFO STREAM that none after cursor was trimmed or deleted before it
// read them (conservatively: a reader more than MaxLen entries behind, or
// one that started on an empty log, may reload once for nothing). A gap is
// revocation.ErrGap; the entries read are returned with it.
func (s *RevocationStore) Read(ctx context.Context, cursor string, block time.Duration) ([]revocation.Record, string, error) {
	rctx, cancel := context.WithTimeout(ctx, block+time.Second)
	defer cancel()
	res, err := s.client.XRead(rctx, &goredis.XReadArgs{Streams: []string{s.log, cursor}, Count: s.opts.BatchSize, Block: block}).Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, cursor, fmt.Errorf("redis XREAD: %w", err)
	}
	var out []revocation.Record
	next := cursor
	for _, st := range res {
		for _, m := range st.Messages {
			out = append(out, recordOf(m.Values))
			next = m.ID
		}
	}
	if err := s.checkGap(ctx, cursor); err != nil {
		return out, next, err
	}
	return out, next, nil
}

func (s *RevocationStore) checkGap(ctx context.Context, cursor string) error {
	info, err := s.client.XInfoStream(ctx, s.log).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			if cursor != "0-0" {
				return revocation.ErrGap // the log is gone: the store lost it
			}
			return nil
		}
		return fmt.Errorf("redis XINFO STREAM: %w", err)
	}
	// Trimming removes the oldest entries first, so an entry after cursor
	// was trimmed exactly when the first one left is after cursor, or
	// (with the first left after cursor, yet nothing lost) when cursor
	// is older than everything: both reload, which is safe. XDEL shows in
	// max-deleted-entry-id (Redis 7).
	switch {
	case cursor == "0-0":
		// Read from the very start: anything removed was unseen.
		if info.EntriesAdded > info.Length {
			return revocation.ErrGap
		}
	case info.FirstEntry.ID != "" && revocation.CompareIDs(info.FirstEntry.ID, cursor) > 0:
		return revocation.ErrGap
	case info.FirstEntry.ID == "" && revocation.CompareIDs(info.LastGeneratedID, cursor) > 0:
		// Emptied (XTRIM MAXLEN 0, or trimmed by MINID) after entries
		// past cursor were added: there is no first entry to compare.
		return revocation.ErrGap
	case info.MaxDeletedEntryID != "" && revocation.CompareIDs(info.MaxDeletedEntryID, cursor) > 0:
		return revocation.ErrGap
	}
	if revocation.CompareIDs(info.LastGeneratedID, cursor) < 0 {
		return revocation.ErrGap // the log restarted below our position
	}
	return nil
}

// recordOf decodes a log entry; a malformed one becomes an invalid record
// (dropped and counted by the List).
func recordOf(v map[string]any) revocation.Record {
	str := func(k string) string { s, _ := v[k].(string); return s }
	k, ok := revocation.ParseKind(str("k"))
	at, err := strconv.ParseInt(str("t"), 10, 64)
	if !ok || err != nil {
		return revocation.Record{Kind: 255}
	}
	id := str("id")
	if k.Digest() {
		raw, err := hex.DecodeString(id)
		if err != nil {
			return revocation.Record{Kind: 255}
		}
		id = string(raw)
	}
	return revocation.Record{Kind: k, ID: id, App: str("app"), At: at}
}

// Lookup reads what the records say about q in one pipeline (one round
// trip; every key is in one slot).
func (s *RevocationStore) Lookup(ctx context.Context, q *revocation.Query) (revocation.Found, error) {
	var members []string
	var kinds []revocation.Kind
	for k, id := range q.IDs {
		if id == "" {
			continue
		}
		m := credMember(revocation.Kind(k), id)
		members = append(members, m)
		kinds = append(kinds, revocation.Kind(k))
		if revocation.Kind(k).Digest() {
			// The layout says lower-case hex, and the log and the
			// snapshot read either case; a writer that used upper case
			// is found here too.
			members = append(members, revocation.Kind(k).String()+":"+strings.ToUpper(m[len(revocation.Kind(k).String())+1:]))
			kinds = append(kinds, revocation.Kind(k))
		}
	}
	var creds, subj, app *goredis.FloatSliceCmd
	_, err := s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		if len(members) > 0 {
			creds = p.ZMScore(ctx, s.creds, members...)
		}
		if q.Subject != "" && !q.NoEpoch {
			subj = p.ZMScore(ctx, s.subjects, q.Subject)
			if q.App != "" {
				app = p.ZMScore(ctx, s.apps, appMember(q.Subject, q.App))
			}
		}
		return nil
	})
	if err != nil {
		return revocation.Found{}, fmt.Errorf("redis revocation lookup: %w", err)
	}
	var f revocation.Found
	if creds != nil {
		for i, sc := range creds.Val() {
			if sc != 0 && i < len(kinds) {
				return revocation.Found{Cred: true, Kind: kinds[i]}, nil
			}
		}
	}
	for _, c := range []*goredis.FloatSliceCmd{subj, app} {
		if c != nil && len(c.Val()) == 1 {
			f.Epoch = max(f.Epoch, atOf(c.Val()[0]))
		}
	}
	return f, nil
}

// Target is where a command-line tool finds Redis (the service itself
// builds its client from the redis section).
type Target struct {
	Addrs              []string
	Cluster            bool // also implied by several addresses
	Username, Password string
}

// DialRevocationStore returns a store over a new client for t, and the
// function that closes the client.
func DialRevocationStore(t Target, opts RevocationOptions) (*RevocationStore, func() error) {
	cli := goredis.NewUniversalClient(&goredis.UniversalOptions{
		Addrs: t.Addrs, Username: t.Username, Password: t.Password, IsClusterMode: t.Cluster || len(t.Addrs) > 1,
	})
	return NewRevocationStore(cli, opts), cli.Close
}
