package server

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ext-authz/ext-authz/authz"
	"github.com/ext-authz/ext-authz/internal/generation"
	"github.com/ext-authz/ext-authz/ratelimit"
)

// candidateLogsPerSecond bounds the disagreement log lines: at 100 %
// sampling a candidate that disagrees on a hot route would otherwise log
// every request. The counters count every disagreement.
const candidateLogsPerSecond = 10

// candidateDecider is the Decider both transports ask: the live pipeline,
// and on a sample of requests the serving generation's candidate policy
// beside it (docs/policy-rollout.md).
type candidateDecider struct {
	live   *authz.Live
	cand   atomic.Pointer[generation.Candidate]
	m      *candidateMetrics
	logger *slog.Logger
	// second and logged bound the log lines (candidateLogsPerSecond).
	second, logged atomic.Int64
}

func newCandidateDecider(live *authz.Live, c *generation.Candidate, logger *slog.Logger, reg prometheus.Registerer) *candidateDecider {
	d := &candidateDecider{live: live, m: newCandidateMetrics(reg), logger: logger}
	d.store(c)
	return d
}

// store swaps in a generation's candidate (nil: none) and says so in the
// log when there is one, or was one.
func (d *candidateDecider) store(c *generation.Candidate) {
	old := d.cand.Swap(c)
	pct := 0.0
	switch {
	case c != nil:
		pct = c.SamplePercent
		d.logger.Info("candidate policy beside the live one", "file", c.File, "sample_percent", pct)
	case old != nil:
		d.logger.Info("candidate policy off")
	}
	d.m.percent.Set(pct)
}

// Decide enforces the live decision; a sampled request is also decided
// by the candidate, and the two compared.
func (d *candidateDecider) Decide(ctx context.Context, r *authz.Request) authz.Decision {
	c := d.cand.Load()
	if c == nil || (c.SamplePercent < 100 && rand.Float64()*100 >= c.SamplePercent) {
		return d.live.Decide(ctx, r)
	}
	dec, cmp := c.Compare(ctx, r)
	if cmp.Skipped {
		return dec
	}
	if cmp.Agree() {
		d.m.agree.Inc()
		return dec
	}
	d.m.disagree.Inc()
	d.m.pairs.WithLabelValues(ruleLabel(dec.Rule), ruleLabel(cmp.Candidate.Rule), dec.Code.String(), cmp.Candidate.Code.String()).Inc()
	if d.logBudget() {
		d.logDisagreement(ctx, r, &dec, &cmp)
	} else {
		d.m.logsSuppressed.Inc()
	}
	return dec
}

func ruleLabel(rule string) string {
	if rule == "" {
		return "(none)"
	}
	return rule
}

// logBudget reports whether another disagreement may be logged this
// second.
func (d *candidateDecider) logBudget() bool {
	now := time.Now().Unix()
	if s := d.second.Load(); s != now && d.second.CompareAndSwap(s, now) {
		d.logged.Store(0)
	}
	return d.logged.Add(1) <= candidateLogsPerSecond
}

// logDisagreement logs both decisions: results, reasons, rules, the
// subject, what differs, and the rate-limit descriptors each built (whose
// values are never credentials: the config refuses credential headers as
// descriptor sources). Header values are not logged.
func (d *candidateDecider) logDisagreement(ctx context.Context, r *authz.Request, dec *authz.Decision, cmp *authz.Comparison) {
	cd := &cmp.Candidate
	attrs := []slog.Attr{
		slog.String("decision_id", dec.ID), slog.String("request_id", r.RequestID),
		slog.String("method", r.Method), slog.String("host", r.Host), slog.String("path", r.Path),
		slog.String("differs", strings.Join(cmp.Differs, ",")),
		slog.Group("live", "result", dec.Code.String(), "reason", dec.Reason, "rule", dec.Rule,
			"subject", dec.Subject(), "rate_limits", describeLimits(&cmp.LiveLimits)),
		slog.Group("candidate", "result", cd.Code.String(), "reason", cd.Reason, "rule", cd.Rule,
			"subject", cd.Subject(), "rate_limits", describeLimits(&cmp.CandidateLimits)),
	}
	d.logger.LogAttrs(ctx, slog.LevelInfo, "candidate policy disagrees", attrs...)
}

// describeLimits renders a rate-limit request as "domain: k=v,k=v; k=v".
func describeLimits(req *ratelimit.Request) string {
	if req.Domain == "" {
		return ""
	}
	var b strings.Builder
	b.WriteString(req.Domain)
	b.WriteString(":")
	for i, desc := range req.Descriptors {
		if i > 0 {
			b.WriteString(";")
		}
		b.WriteString(" ")
		for j, e := range desc.Entries {
			if j > 0 {
				b.WriteString(",")
			}
			b.WriteString(e.Key + "=" + e.Value)
		}
	}
	return b.String()
}

type candidateMetrics struct {
	agree, disagree prometheus.Counter
	pairs           *prometheus.CounterVec
	logsSuppressed  prometheus.Counter
	percent         prometheus.Gauge
}

func newCandidateMetrics(reg prometheus.Registerer) *candidateMetrics {
	checks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ext_authz_candidate_checks_total",
		Help: "Requests decided by both the live and the candidate policy, by whether they agreed.",
	}, []string{"agreement"})
	m := &candidateMetrics{
		agree:    checks.WithLabelValues("agree"),
		disagree: checks.WithLabelValues("disagree"),
		pairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ext_authz_candidate_disagreements_total",
			Help: "Requests the candidate policy decided otherwise than the live one, by the rule each matched ((none): no rule) and each result.",
		}, []string{"live_rule", "candidate_rule", "live_result", "candidate_result"}),
		logsSuppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ext_authz_candidate_logs_suppressed_total",
			Help: "Disagreements not logged because more than 10 a second were.",
		}),
		percent: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ext_authz_candidate_sample_percent",
			Help: "Share of requests the candidate policy decides too (0: no candidate).",
		}),
	}
	if reg != nil {
		reg.MustRegister(checks, m.pairs, m.logsSuppressed, m.percent)
	}
	return m
}
