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
	if !d.l.Sampled(dec.Allowed()) {
		return
	}
	e := decisionlog.Entry{
		DecisionID: dec.ID, RequestID: r.RequestID, Result: dec.Code.String(), Reason: dec.Reason, Rule: dec.Rule,
		Method: r.Method, Host: r.Host, Path: r.Path, Latency: elapsed,
	}
	if dec.Identity != nil {
		e.Identified, e.Subject, e.Authenticator = true, dec.Identity.Subject, dec.Identity.Authenticator
		e.Plan = dec.Identity.Plan
	}
	e.RateLimitPolicy = dec.RateLimitPolicy
	d.l.Write(ctx, &e)
}
