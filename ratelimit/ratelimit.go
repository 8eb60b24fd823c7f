package ratelimit

import (
	"strings"
	"time"
)

// Entry is one key/value pair of a descriptor, e.g. {"user", "alice"}.
type Entry struct {
	Key, Value string
}

// Descriptor is an ordered list of entries that names what is counted, as in
// Envoy's rate limit descriptors.
type Descriptor struct {
	Entries []Entry
	// Hits is how much to add to the descriptor's counter; 0 checks the
	// limit without counting.
	Hits uint64
	// Override, when set, is the limit to apply instead of the configured
	// one (Envoy's descriptor "limit" override). It applies only in a
	// domain the Matcher defines, as in envoyproxy/ratelimit.
	Override *Limit
	// Limits, when not empty, are the limits that apply (a plan's, or a
	// quota from the identity), instead of Override and the Matcher's.
	// Each is one window; all are decided together (see Op.Windows) and
	// the tightest decides.
	Limits []*Limit
}

// Request is one rate-limit check: all descriptors of one domain, counted
// together in one Store call.
type Request struct {
	Domain      string
	Descriptors []Descriptor
}

// Unit is the length of a fixed window.
type Unit int

// Units, as in envoyproxy/ratelimit files.
const (
	UnitUnknown Unit = iota
	Second
	Minute
	Hour
	Day
	Week
	Month // 30 days, as envoyproxy/ratelimit counts it
	Year  // 365 days
)

var unitNames = [...]string{"unknown", "second", "minute", "hour", "day", "week", "month", "year"}

func (u Unit) String() string {
	if u >= 0 && int(u) < len(unitNames) {
		return unitNames[u]
	}
	return "unknown"
}

// ParseUnit parses a unit name case-insensitively.
func ParseUnit(s string) (Unit, bool) {
	for i, n := range unitNames {
		if i > 0 && strings.EqualFold(s, n) {
			return Unit(i), true
		}
	}
	return UnitUnknown, false
}

// Seconds is the window length in seconds (0 for an unknown unit).
func (u Unit) Seconds() int64 {
	switch u {
	case Second:
		return 1
	case Minute:
		return 60
	case Hour:
		return 3600
	case Day:
		return 86400
	case Week:
		return 7 * 86400
	case Month:
		return 30 * 86400
	case Year:
		return 365 * 86400
	}
	return 0
}

// Duration is the window length.
func (u Unit) Duration() time.Duration { return time.Duration(u.Seconds()) * time.Second }

// Limit is the limit that applies to a descriptor.
type Limit struct {
	// Name is the limit's configured name ("" when unnamed); other limits
	// name it in Replaces.
	Name string
	// Policy names the limit in RateLimit-Policy headers: Name, or the
	// domain and the descriptor keys (never request values, which may be
	// secrets).
	Policy string
	// Requests is how many hits a window allows.
	Requests uint32
	Unit     Unit
	// Unlimited means the descriptor is explicitly not limited.
	Unlimited bool
	// Shadow counts and reports over-limit but allows.
	Shadow bool
	// Replaces names limits that this one supersedes when both apply.
	Replaces []string
	// SharedValues, when not nil, holds per entry the value to count under
	// instead of the request's (envoyproxy/ratelimit share_threshold: all
	// values matching a wildcard share one counter).
	SharedValues []string
	// Plan is the plan the limit comes from ("" for limits of the
	// rate-limit files).
	Plan string
}

// Code is the outcome of a check.
type Code int

// Outcomes.
const (
	// OK: within every limit, or only over shadow limits.
	OK Code = iota
	// OverLimit: over at least one enforced limit.
	OverLimit
	// Unavailable: the store failed and the domain fails closed with 503.
	Unavailable
)

var codeNames = [...]string{"ok", "over_limit", "unavailable"}

func (c Code) String() string {
	if c >= 0 && int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "unknown"
}

// Status is the outcome for one descriptor.
type Status struct {
	// Code is OK or OverLimit (shadow limits report OK).
	Code Code
	// Limit is the limit that applied; nil when none did.
	Limit *Limit
	// Remaining is how many hits the window still allows.
	Remaining uint32
	// ResetAfter is the time until the window ends.
	ResetAfter time.Duration
	// ShadowOverLimit is set when a shadow limit was exceeded.
	ShadowOverLimit bool
	// LocalCache is set when the over-limit answer came from the local
	// over-limit cache without asking the store.
	LocalCache bool
	// Windows has every limit of a descriptor with several (Limits), in
	// order; Limit, Remaining and ResetAfter above are then those of the
	// window that denied, else of the one with the fewest hits left.
	Windows []WindowStatus
}

// WindowStatus is the outcome for one limit of a descriptor with several.
type WindowStatus struct {
	Limit      *Limit
	Over       bool
	Remaining  uint32
	ResetAfter time.Duration
}

// Result is the outcome of a Request.
type Result struct {
	// Code is OverLimit when any descriptor is over an enforced limit,
	// Unavailable when the store failed and the domain fails closed with
	// 503, else OK.
	Code Code
	// Statuses has one entry per request descriptor, in order; it is nil
	// when the store failed.
	Statuses []Status
	// FailedOpen is set when the store failed and the domain's failure mode
	// allowed the request.
	FailedOpen bool
	// Failed is set whenever the store failed (open or closed).
	Failed bool
}
