package ratelimit

import (
	"strconv"
	"strings"
)

// policyHeader is the RateLimit-Policy value of st: its limit, or, for a
// descriptor with several limits, every one of them (the IETF httpapi
// draft's list of policies; the RateLimit field then names the one that
// denied, or the one closest to exhausted).
func policyHeader(st *Status) string {
	if len(st.Windows) < 2 {
		return PolicyItem(st.Limit)
	}
	var b strings.Builder
	for i := range st.Windows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(PolicyItem(st.Windows[i].Limit))
	}
	return b.String()
}

// PolicyItem renders one limit as a RateLimit-Policy list member:
// "name";q=requests;w=seconds.
func PolicyItem(lm *Limit) string {
	return sfString(lm.Policy) + ";q=" + strconv.FormatUint(uint64(lm.Requests), 10) + ";w=" + strconv.FormatInt(lm.Unit.Seconds(), 10)
}

// Deciding is the status the headers describe: the limit that denied, or
// the one closest to exhausted; nil when no limit applied.
func (r *Result) Deciding() *Status { return r.pick() }
