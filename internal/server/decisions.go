package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/internal/decisionlog"
	"github.com/ext-authz/ext-authz/internal/telemetry"
)

// decisionLog adapts internal/decisionlog to extauthz's Observe hook.
type decisionLog struct{ l *decisionlog.Log }

func newDecisionLog(logger *slog.Logger, c telemetry.DecisionLogConfig, reg prometheus.Registerer) *decisionLog {
	return &decisionLog{l: decisionlog.New(logger, c, reg)}
}

// observe is the extauthz Observe hook.
func (d *decisionLog) observe(ctx context.Context, r *authz.Request, dec *authz.Decision, elapsed time.Duration) {
	// A shadow rule that disagrees with the enforced decision is what
	// shadowing is for: always logged (within max_per_second).
	if !d.l.Sampled(dec.Allowed()) && !shadowDisagrees(dec) {
		return
	}
	e := decisionlog.Entry{
		DecisionID: dec.ID, RequestID: r.RequestID, Result: dec.Code.String(), Reason: dec.Reason, Rule: dec.Rule,
		Method: r.Method, Host: r.Host, Path: r.Path, Latency: elapsed,
	}
	for _, s := range dec.Shadow {
		e.Shadow = append(e.Shadow, s.Rule+":"+s.Code.String()+":"+s.Reason)
	}
	if dec.Identity != nil {
		e.Identified, e.Subject, e.Authenticator = true, dec.Identity.Subject, dec.Identity.Authenticator
		e.Plan = dec.Identity.Plan
	}
	e.RateLimitPolicy = dec.RateLimitPolicy
	d.l.Write(ctx, &e)
}

// shadowDisagrees reports whether a shadow rule would have decided
// otherwise than the decision enforced.
func shadowDisagrees(dec *authz.Decision) bool {
	for _, s := range dec.Shadow {
		if s.Code != dec.Code {
			return true
		}
	}
	return false
}
