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

	Target   serverSummary  `json:"target"`
	Baseline *serverSummary `json:"baseline,omitempty"`
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

	Expect      string  `json:"expect,omitempty"`
	ExpectShare float64 `json:"expect_share"`
	minExpected float64
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
	PeakRSS    int64             `json:"peak_rss_bytes,omitempty"`
	RSSError   string            `json:"peak_rss_error,omitempty"`
	// ServerCPU and DriverCPU are medians of CPU time per request.
	ServerCPU time.Duration `json:"server_cpu_per_request_ns,omitempty"`
	DriverCPU time.Duration `json:"driver_cpu_per_request_ns,omitempty"`
	AuxCPU    time.Duration `json:"aux_cpu_per_request_ns,omitempty"`
}

func summarise(c *config, targets []*target) *summary {
	s := &summary{
		Label: c.label, Scenario: c.scenario.Name, Mode: mode(c.opts), Workers: c.opts.Workers,
		Conns: c.conns, Rate: c.opts.Rate, Rounds: c.rounds, Duration: c.opts.Duration.String(),
		Expect: c.expect, minExpected: c.minExpected,
	}
	s.Target = serverOf(targets[0])
	if len(targets) > 1 {
		b := serverOf(targets[1])
		s.Baseline = &b
		tr, br := targets[0].results, targets[1].results
		tput := func(r result) float64 { return r.Throughput }
		s.ThroughputRatio = medianRatio(tr, br, tput)
		if rs := ratios(tr, br, tput); len(rs) > 0 {
			s.ThroughputRatioMin, s.ThroughputRatioMax = slices.Min(rs), slices.Max(rs)
		}
		s.P50Ratio = medianRatio(tr, br, func(r result) float64 { return float64(r.P50) })
		s.P99Ratio = medianRatio(tr, br, func(r result) float64 { return float64(r.P99) })
		s.ServerCPURatio = medianRatio(tr, br, func(r result) float64 { return float64(r.ServerCPU) })
	}
	if s.Target.Requests > 0 {
		if c.expect == "" {
			s.ExpectShare = 1
		} else {
			s.ExpectShare = float64(s.Target.Mix[c.expect]) / float64(s.Target.Requests)
		}
	}
	return s
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
		for k, v := range r.Mix {
			s.Mix[k] += v
		}
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
		b.WriteByte('\n')
	}
	line("target", &s.Target)
	if s.Baseline != nil {
		line("baseline", s.Baseline)
		fmt.Fprintf(&b, "RESULT %s: throughput %.1f%% of baseline (rounds %.1f..%.1f%%), p50 %.2fx, p99 %.2fx",
			s.Label, 100*s.ThroughputRatio, 100*s.ThroughputRatioMin, 100*s.ThroughputRatioMax, s.P50Ratio, s.P99Ratio)
		if s.ServerCPURatio > 0 {
			fmt.Fprintf(&b, ", server CPU per request %.2fx", s.ServerCPURatio)
		}
		b.WriteByte('\n')
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
	return nil
}
