package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ext-authz/ext-authz/loadtest/load"
)

// summary is the outcome of all rounds, also written as JSON.
type summary struct {
	Label    string  `json:"label"`
	Scenario string  `json:"scenario"`
	Mode     string  `json:"mode"`
	Workers  int     `json:"workers"`
	Conns    int     `json:"conns"`
	Rate     float64 `json:"rate,omitempty"`
	Rounds   int     `json:"rounds"`
	Duration string  `json:"duration"`
	Decode   string  `json:"decode"`
	// Fresh is set with -fresh: the pool's size; each server's walk over
	// it is in its PoolUsed and PoolWrapped.
	Fresh int `json:"fresh_pool,omitempty"`

	TargetName   string         `json:"target_name"`
	BaselineName string         `json:"baseline_name,omitempty"`
	PeerName     string         `json:"peer_name,omitempty"`
	Target       serverSummary  `json:"target"`
	Baseline     *serverSummary `json:"baseline,omitempty"`
	Peer         *serverSummary `json:"peer,omitempty"`
	// Ratios target/baseline, each the median of the rounds' ratios (a
	// round drives both servers back to back, so its ratio is paired).
	ThroughputRatio float64 `json:"throughput_ratio,omitempty"`
	// ThroughputRatioMin and Max are the extremes over the rounds: the
	// spread says how much to trust the median on a shared machine.
	ThroughputRatioMin float64 `json:"throughput_ratio_min,omitempty"`
	ThroughputRatioMax float64 `json:"throughput_ratio_max,omitempty"`
	P50Ratio           float64 `json:"p50_ratio,omitempty"`
	P99Ratio           float64 `json:"p99_ratio,omitempty"`
	// ServerCPURatio is the server's CPU time per request, target over
	// baseline.
	ServerCPURatio float64 `json:"server_cpu_ratio,omitempty"`

	// Comparisons are every pair measured: target/baseline, target/peer
	// and peer/baseline (the first repeats the ratios above).
	Comparisons []comparison `json:"comparisons,omitempty"`
	// Goal is the goal the ratios were held to, Goals its checks.
	Goal  string        `json:"goal,omitempty"`
	Goals []goalOutcome `json:"goals,omitempty"`
	judge bool

	Expect          string  `json:"expect,omitempty"`
	ExpectShare     float64 `json:"expect_share"`
	PeerExpect      string  `json:"peer_expect,omitempty"`
	PeerExpectShare float64 `json:"peer_expect_share,omitempty"`
	minExpected     float64
}

// comparison holds the median over rounds of one server's per-round
// ratios to another's (Of over Versus).
type comparison struct {
	Of     string `json:"of"`
	Versus string `json:"versus"`
	// of and versus are the roles (target, baseline, peer).
	of, versus    string
	Throughput    float64 `json:"throughput"`
	ThroughputMin float64 `json:"throughput_min"`
	ThroughputMax float64 `json:"throughput_max"`
	P50           float64 `json:"p50"`
	P99           float64 `json:"p99"`
	ServerCPU     float64 `json:"server_cpu,omitempty"`
	PeakRSS       float64 `json:"peak_rss,omitempty"`
}

func compare(of, versus *target, ofName, versusName string, ofSum, versusSum *serverSummary) comparison {
	c := comparison{Of: ofName, Versus: versusName, of: of.name, versus: versus.name}
	tr, br := of.results, versus.results
	tput := func(r result) float64 { return r.Throughput }
	c.Throughput = medianRatio(tr, br, tput)
	if rs := ratios(tr, br, tput); len(rs) > 0 {
		c.ThroughputMin, c.ThroughputMax = slices.Min(rs), slices.Max(rs)
	}
	c.P50 = medianRatio(tr, br, func(r result) float64 { return float64(r.P50) })
	c.P99 = medianRatio(tr, br, func(r result) float64 { return float64(r.P99) })
	c.ServerCPU = medianRatio(tr, br, func(r result) float64 { return float64(r.ServerCPU) })
	if ofSum.PeakRSS > 0 && versusSum.PeakRSS > 0 {
		c.PeakRSS = float64(ofSum.PeakRSS) / float64(versusSum.PeakRSS)
	}
	return c
}

// serverSummary holds one server's medians over the rounds.
type serverSummary struct {
	Addr       string            `json:"addr"`
	Throughput float64           `json:"throughput"`
	P50        time.Duration     `json:"p50_ns"`
	P90        time.Duration     `json:"p90_ns"`
	P99        time.Duration     `json:"p99_ns"`
	P999       time.Duration     `json:"p999_ns"`
	Requests   uint64            `json:"requests"`
	Mix        map[string]uint64 `json:"mix"`
	Late       uint64            `json:"late,omitempty"`
	// Cut counts calls unanswered when a round ended (their waits are in
	// the percentiles, as lower bounds).
	Cut      uint64 `json:"unanswered_at_end,omitempty"`
	PeakRSS  int64  `json:"peak_rss_bytes,omitempty"`
	RSSError string `json:"peak_rss_error,omitempty"`
	// ServerCPU and DriverCPU are medians of CPU time per request.
	ServerCPU time.Duration `json:"server_cpu_per_request_ns,omitempty"`
	DriverCPU time.Duration `json:"driver_cpu_per_request_ns,omitempty"`
	AuxCPU    time.Duration `json:"aux_cpu_per_request_ns,omitempty"`
	// PoolUsed and PoolWrapped (-fresh): requests this server was sent
	// over the whole measurement, warm-ups included, and how many of them
	// it had been sent before because the pool ran out.
	PoolUsed    uint64 `json:"pool_used,omitempty"`
	PoolWrapped uint64 `json:"pool_wrapped,omitempty"`
}

func summarise(c *config, targets []*target) *summary {
	s := &summary{
		Label: c.label, Scenario: c.scenario.Name, Mode: mode(c.opts), Workers: c.opts.Workers,
		Conns: c.conns, Rate: c.opts.Rate, Rounds: c.rounds, Duration: c.opts.Duration.String(),
		Expect: c.expect, minExpected: c.minExpected, TargetName: c.targetName, Goal: c.goal, judge: c.judge,
		Decode: c.decode,
	}
	var tgt, base, peer *target
	for _, t := range targets {
		switch t.name {
		case "target":
			tgt = t
		case "baseline":
			base = t
		case "peer":
			peer = t
		}
	}
	s.Target = serverOf(tgt)
	if tgt.cursor != nil {
		s.Fresh = int(tgt.cursor.n)
	}
	if base != nil {
		b := serverOf(base)
		s.Baseline, s.BaselineName = &b, c.baselineName
		cmp := compare(tgt, base, c.targetName, c.baselineName, &s.Target, s.Baseline)
		s.Comparisons = append(s.Comparisons, cmp)
		s.ThroughputRatio, s.ThroughputRatioMin, s.ThroughputRatioMax = cmp.Throughput, cmp.ThroughputMin, cmp.ThroughputMax
		s.P50Ratio, s.P99Ratio, s.ServerCPURatio = cmp.P50, cmp.P99, cmp.ServerCPU
	}
	if peer != nil {
		p := serverOf(peer)
		s.Peer, s.PeerName, s.PeerExpect = &p, c.peerName, c.peerExpect
		s.Comparisons = append(s.Comparisons, compare(tgt, peer, c.targetName, c.peerName, &s.Target, s.Peer))
		if base != nil {
			s.Comparisons = append(s.Comparisons, compare(peer, base, c.peerName, c.baselineName, s.Peer, s.Baseline))
		}
		s.PeerExpectShare = expectShare(s.Peer, c.peerExpect)
	}
	s.ExpectShare = expectShare(&s.Target, c.expect)
	if c.goal != "" {
		s.Goals = judgeGoal(goals[c.goal], s.comparison)
	}
	return s
}

// comparison returns the target's comparison with the server in role
// versus (baseline, peer).
func (s *summary) comparison(versus string) (comparison, bool) {
	for _, c := range s.Comparisons {
		if c.of == "target" && c.versus == versus {
			return c, true
		}
	}
	return comparison{}, false
}

// nameOf names a role; "none" for a server that was not measured.
func (s *summary) nameOf(role string) string {
	name := s.TargetName
	switch role {
	case "baseline":
		name = s.BaselineName
	case "peer":
		name = s.PeerName
	}
	if name == "" {
		return "none"
	}
	return name
}

// expectShare is the share of a server's answers that were want ("" : any).
func expectShare(m *serverSummary, want string) float64 {
	switch {
	case m.Requests == 0:
		return 0
	case want == "":
		return 1
	}
	return float64(m.Mix[want]) / float64(m.Requests)
}

func serverOf(t *target) serverSummary {
	s := serverSummary{Addr: t.addr, Mix: map[string]uint64{}}
	f := func(g func(result) float64) float64 {
		v := make([]float64, len(t.results))
		for i, r := range t.results {
			v[i] = g(r)
		}
		return median(v)
	}
	s.Throughput = f(func(r result) float64 { return r.Throughput })
	s.P50 = time.Duration(f(func(r result) float64 { return float64(r.P50) }))
	s.P90 = time.Duration(f(func(r result) float64 { return float64(r.P90) }))
	s.P99 = time.Duration(f(func(r result) float64 { return float64(r.P99) }))
	s.P999 = time.Duration(f(func(r result) float64 { return float64(r.P999) }))
	s.ServerCPU = time.Duration(f(func(r result) float64 { return float64(r.ServerCPU) }))
	s.DriverCPU = time.Duration(f(func(r result) float64 { return float64(r.DriverCPU) }))
	s.AuxCPU = time.Duration(f(func(r result) float64 { return float64(r.AuxCPU) }))
	for _, r := range t.results {
		s.Requests += r.Requests
		s.Late += r.Late
		s.Cut += r.Cut
		for k, v := range r.Mix {
			s.Mix[k] += v
		}
	}
	if t.cursor != nil {
		s.PoolUsed, s.PoolWrapped = t.cursor.used(), t.cursor.wrapped.Load()
	}
	if t.pid > 0 {
		if rss, err := peakRSS(t.pid); err != nil {
			s.RSSError = err.Error()
		} else {
			s.PeakRSS = rss
		}
	}
	return s
}

// medianRatio is the median over rounds of target/baseline.
func medianRatio(target, baseline []result, f func(result) float64) float64 {
	return median(ratios(target, baseline, f))
}

// ratios are the rounds' target/baseline ratios.
func ratios(target, baseline []result, f func(result) float64) []float64 {
	var v []float64
	for i := range min(len(target), len(baseline)) {
		if b := f(baseline[i]); b > 0 {
			v = append(v, f(target[i])/b)
		}
	}
	return v
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func (s *summary) text() string {
	var b strings.Builder
	line := func(name string, m *serverSummary) {
		fmt.Fprintf(&b, "%-8s median %9.0f req/s  p50 %s  p90 %s  p99 %s  p99.9 %s  [%s]",
			name, m.Throughput, ms(m.P50), ms(m.P90), ms(m.P99), ms(m.P999), load.Result{Mix: m.Mix}.MixString())
		if m.ServerCPU > 0 {
			fmt.Fprintf(&b, "  cpu/req server %s driver %s", us(m.ServerCPU), us(m.DriverCPU))
			if m.AuxCPU > 0 {
				fmt.Fprintf(&b, " aux %s", us(m.AuxCPU))
			}
		}
		if m.PeakRSS > 0 {
			fmt.Fprintf(&b, "  peak RSS %.1f MiB", float64(m.PeakRSS)/(1<<20))
		}
		if m.RSSError != "" {
			fmt.Fprintf(&b, "  peak RSS unknown (%s)", m.RSSError)
		}
		if s.Fresh > 0 {
			fmt.Fprintf(&b, "  fresh: sent %d of %d pool requests, %d again", m.PoolUsed, s.Fresh, m.PoolWrapped)
		}
		b.WriteByte('\n')
	}
	line("target", &s.Target)
	if s.Baseline != nil {
		line("baseline", s.Baseline)
	}
	if s.Peer != nil {
		line("peer", s.Peer)
	}
	for _, c := range s.Comparisons {
		of := ""
		if c.of != "target" {
			of = " " + c.Of
		}
		fmt.Fprintf(&b, "RESULT %s%s: throughput %.1f%% of %s (rounds %.1f..%.1f%%), p50 %.2fx, p99 %.2fx",
			s.Label, of, 100*c.Throughput, c.Versus, 100*c.ThroughputMin, 100*c.ThroughputMax, c.P50, c.P99)
		if c.ServerCPU > 0 {
			fmt.Fprintf(&b, ", server CPU per request %.2fx", c.ServerCPU)
		}
		if c.PeakRSS > 0 {
			fmt.Fprintf(&b, ", peak RSS %.2fx", c.PeakRSS)
		}
		b.WriteByte('\n')
	}
	// One key=value line per comparison and per goal check, for scripts.
	for _, c := range s.Comparisons {
		fmt.Fprintf(&b, "RATIO label=%s of=%s vs=%s throughput=%.3f throughput_min=%.3f throughput_max=%.3f p50=%.3f p99=%.3f cpu=%.3f rss=%.3f rounds=%d\n",
			s.Label, c.Of, c.Versus, c.Throughput, c.ThroughputMin, c.ThroughputMax, c.P50, c.P99, c.ServerCPU, c.PeakRSS, s.Rounds)
	}
	for _, g := range s.Goals {
		fmt.Fprintf(&b, "GOAL label=%s goal=%s check=%s vs=%s value=%.3f want=%s result=%s\n",
			s.Label, s.Goal, g.Check, s.nameOf(g.versus), g.Value, g.Want, g.Result)
	}
	return b.String()
}

// check fails the run when the target did not answer as expected: a
// throughput of wrong answers (expired tokens, a missing rule) measures
// nothing.
func (s *summary) check() error {
	if s.Target.Requests == 0 {
		return errors.New("the target answered no request")
	}
	if s.ExpectShare < s.minExpected {
		return fmt.Errorf("only %.2f%% of the target's answers were %q (want at least %.2f%%): %s",
			100*s.ExpectShare, s.Expect, 100*s.minExpected, load.Result{Mix: s.Target.Mix}.MixString())
	}
	if s.Baseline != nil && s.Baseline.Mix["ok"] != s.Baseline.Requests {
		return fmt.Errorf("the baseline answered other than ok: %s", load.Result{Mix: s.Baseline.Mix}.MixString())
	}
	if s.Fresh > 0 {
		// A wrapped walk sent a server requests it had seen: its cache
		// answered them, and the measurement is not of never-seen ones.
		for _, r := range []struct {
			name string
			m    *serverSummary
		}{{"target", &s.Target}, {"peer", s.Peer}} {
			if r.m != nil && r.m.PoolWrapped > 0 {
				return fmt.Errorf("-fresh: the pool of %d requests wrapped for the %s (%d sent, %d of them again); mint a pool of at least %d",
					s.Fresh, r.name, r.m.PoolUsed, r.m.PoolWrapped, r.m.PoolUsed)
			}
		}
	}
	if s.Peer != nil && s.PeerExpectShare < s.minExpected {
		// A peer that denies what ext-authz allows is not doing the same work.
		return fmt.Errorf("only %.2f%% of the peer's answers were %q (want at least %.2f%%): %s",
			100*s.PeerExpectShare, s.PeerExpect, 100*s.minExpected, load.Result{Mix: s.Peer.Mix}.MixString())
	}
	if s.judge {
		var missed []string
		for _, g := range s.Goals {
			if g.Result != goalPass {
				missed = append(missed, g.Check+" "+g.Result)
			}
		}
		if len(missed) > 0 {
			return fmt.Errorf("%w: %s: %s", errGoalMissed, s.Goal, strings.Join(missed, ", "))
		}
	}
	return nil
}
