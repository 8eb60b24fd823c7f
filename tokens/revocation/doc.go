// Package revocation holds the revocations every verifier consults: per
// credential (a JWT's jti or sid, a signed ticket's id, the SHA-256 of a
// session token or an API key) and per subject (a not-before epoch: every
// credential of the subject issued before it is revoked, for all apps or
// for one).
//
// Where it sits in the flow:
//
//	UDB / `ext-authz token revoke` ─▶ Redis (records + stream) ─▶ Source.Read ─▶ List (memory)
//	tokens verifier ─▶ List.Check(query) ─▶ accepted | revoked | could not decide
//
// A List is shared by every verifier built over the same Redis client and
// configuration. Checks read only memory (a few sharded map lookups), so a
// cached credential costs no Redis round trip; Run keeps the memory current
// by reading the Source's replay log from the last position seen, so a
// blip loses nothing. When the List cannot vouch for its memory (the log
// has not been read for longer than max_staleness, or the records
// outgrew max_records) each Check asks the Source directly (one round
// trip); when that fails too, the Check could not be decided (503).
//
// Records only ever accumulate until they expire (a credential record at
// the credential's own exp, a subject epoch after the retention): a resync
// adds what the store holds to what the List knows and never forgets a
// revocation the store lost.
//
// The package speaks plain Go types; the Redis Source is in tokens/redis.
package revocation
