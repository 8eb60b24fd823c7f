// Package decisionlog writes one log line per sampled authorization
// decision, capped per second so an attack cannot flood the log.
//
// It is transport-neutral: a transport (the gRPC ext_authz server today)
// asks Sampled with the decision's outcome, and only then fills an Entry
// and calls Write. Fields the client chooses (path, host, method, request
// id) are clipped; the subject is pseudonymised (SubjectHash); the query
// string never reaches it (the caller passes the path without it). Lines
// over the cap are counted in ext_authz_decision_logs_dropped_total.
package decisionlog
