package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// errGoalMissed is the error of a run whose measurements are sound but
// whose ratios miss the -goal under -judge.
var errGoalMissed = errors.New("goal missed")

// goalCheck is one bound on a median ratio of the target against another
// server measured in the same rounds.
type goalCheck struct {
	Metric string // throughput, p99, cpu
	Versus string // the role compared with: baseline or peer
	// AtLeast (throughput) or AtMost (latency, CPU): the bound on
	// target/versus.
	AtLeast, AtMost float64
}

// goals are issue 20's goals, measured against the no-op server (the
// baseline) or the peer in the same run.
var goals = map[string][]goalCheck{
	// JWT path, verifications cached: at least the no-op's throughput,
	// p99 no worse, server CPU per request no more.
	"jwt-cached": {
		{Metric: "throughput", Versus: "baseline", AtLeast: 1},
		{Metric: "p99", Versus: "baseline", AtMost: 1},
		{Metric: "cpu", Versus: "baseline", AtMost: 1},
	},
	// JWT + two Redis descriptors: at least 85 % of the no-op.
	"jwt-redis": {
		{Metric: "throughput", Versus: "baseline", AtLeast: 0.85},
	},
	// ShouldRateLimit: twice envoyproxy/ratelimit's throughput at equal or
	// lower p99.
	"rls": {
		{Metric: "throughput", Versus: "peer", AtLeast: 2},
		{Metric: "p99", Versus: "peer", AtMost: 1},
	},
}

func goalNames() string {
	names := make([]string, 0, len(goals))
	for n := range goals {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// Outcomes of a goal check.
const (
	goalPass    = "PASS"
	goalFail    = "FAIL"
	goalMissing = "MISSING" // the server compared with was not measured
)

// goalOutcome is one check's verdict.
type goalOutcome struct {
	Check  string  `json:"check"` // e.g. throughput_vs_baseline
	Value  float64 `json:"value"`
	Want   string  `json:"want"` // e.g. ">=1.00"
	Result string  `json:"result"`
	versus string
}

// judgeGoal holds the comparisons (looked up by the role compared with)
// to each check.
func judgeGoal(checks []goalCheck, lookup func(versus string) (comparison, bool)) []goalOutcome {
	out := make([]goalOutcome, 0, len(checks))
	for _, g := range checks {
		o := goalOutcome{Check: g.Metric + "_vs_" + g.Versus, versus: g.Versus}
		if g.AtLeast > 0 {
			o.Want = fmt.Sprintf(">=%.2f", g.AtLeast)
		} else {
			o.Want = fmt.Sprintf("<=%.2f", g.AtMost)
		}
		c, ok := lookup(g.Versus)
		if ok {
			switch g.Metric {
			case "throughput":
				o.Value = c.Throughput
			case "p99":
				o.Value = c.P99
			case "cpu":
				o.Value = c.ServerCPU
			}
		}
		switch {
		case !ok || o.Value <= 0:
			o.Result = goalMissing
		case g.AtLeast > 0 && o.Value >= g.AtLeast, g.AtMost > 0 && o.Value <= g.AtMost:
			o.Result = goalPass
		default:
			o.Result = goalFail
		}
		out = append(out, o)
	}
	return out
}
