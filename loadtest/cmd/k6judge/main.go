package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
)

// errFailed is returned when the run was measured but a judgement failed.
var errFailed = errors.New("judgement failed")

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, errFailed):
		os.Exit(1)
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "k6judge:", err)
		os.Exit(2)
	}
}

// limits are the pass/fail ratios.
type limits struct {
	k             float64       // latency: authz p99 ≤ k × baseline p99 + slack
	slack         time.Duration // absolute slack on the latency limit
	minThroughput float64       // throughput: authz / baseline ≥ minThroughput
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("k6judge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var lim limits
	fs.Float64Var(&lim.k, "k", 2, "latency: ext-authz's p50 and p99 may be at most K × the no-op's (+ slack)")
	fs.DurationVar(&lim.slack, "slack", 2*time.Millisecond, "latency: absolute slack added to K × the no-op's p50 and p99")
	fs.Float64Var(&lim.minThroughput, "min-throughput", 0.97, "throughput: ext-authz's completed Checks over the no-op's, at least")
	authz := fs.String("authz", "", "comma-separated k6 summaries of the rounds against ext-authz")
	baseline := fs.String("baseline", "", "comma-separated k6 summaries of the rounds against the no-op server, in the same round order")
	label := fs.String("label", "loadtest", "name printed on the RESULT line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if lim.k < 1 || lim.slack < 0 || lim.minThroughput <= 0 || lim.minThroughput > 1 {
		return fmt.Errorf("-k must be ≥ 1, -slack ≥ 0, -min-throughput in (0, 1]")
	}
	a, err := loadAll(*authz)
	if err != nil {
		return fmt.Errorf("-authz: %w", err)
	}
	b, err := loadAll(*baseline)
	if err != nil {
		return fmt.Errorf("-baseline: %w", err)
	}
	if len(a) != len(b) {
		return fmt.Errorf("%d ext-authz rounds but %d baseline rounds: they are compared round by round", len(a), len(b))
	}
	v, err := judge(a, b, lim)
	if err != nil {
		return err
	}
	v.print(stdout, *label, lim)
	if !v.ok() {
		return errFailed
	}
	return nil
}

// summary is the part of k6's handleSummary data that k6judge reads.
type summary struct {
	Metrics map[string]metric `json:"metrics"`
}

type metric struct {
	Values     map[string]float64 `json:"values"`
	Thresholds map[string]struct {
		OK bool `json:"ok"`
	} `json:"thresholds"`
}

func loadAll(list string) ([]summary, error) {
	if list == "" {
		return nil, errors.New("no summaries given")
	}
	var out []summary
	for _, path := range strings.Split(list, ",") {
		s, err := load(path)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func load(path string) (summary, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return summary{}, err
	}
	var s summary
	if err := json.Unmarshal(data, &s); err != nil {
		return summary{}, fmt.Errorf("%s: %w", path, err)
	}
	if len(s.Metrics) == 0 {
		return summary{}, fmt.Errorf("%s: no metrics (not a k6 handleSummary JSON?)", path)
	}
	return s, nil
}

const latencyMetric = "grpc_req_duration"

// scenarios lists the scenarios whose latency the summary tracks, sorted.
func (s summary) scenarios() []string {
	var names []string
	prefix := latencyMetric + "{scenario:"
	for name := range s.Metrics {
		if rest, ok := strings.CutPrefix(name, prefix); ok {
			names = append(names, strings.TrimSuffix(rest, "}"))
		}
	}
	sort.Strings(names)
	return names
}

// value returns a metric's value, 0 when k6 did not report it (a counter
// that never counted, such as dropped_iterations in a run that kept up).
func (s summary) value(metric, stat string) float64 {
	return s.Metrics[metric].Values[stat]
}

// crossed lists the thresholds that failed, as "metric condition".
func (s summary) crossed() []string {
	var out []string
	for name, m := range s.Metrics {
		for cond, r := range m.Thresholds {
			if !r.OK {
				out = append(out, name+" "+cond)
			}
		}
	}
	sort.Strings(out)
	return out
}

// scenarioVerdict is the judgement of one scenario over all rounds.
type scenarioVerdict struct {
	name string
	// medians over rounds, in milliseconds
	authzP50, authzP99, baseP50, baseP99 float64
	// per-round ratios authz/baseline
	p99Ratios, throughputRatios []float64
	dropped                     float64 // ext-authz's dropped iterations, all rounds
	p50OK, p99OK, throughputOK  bool
}

type verdict struct {
	scenarios []scenarioVerdict
	crossed   []string // failed correctness thresholds, "round N: ..."
}

func (v verdict) ok() bool {
	if len(v.crossed) > 0 {
		return false
	}
	for _, s := range v.scenarios {
		if !s.p50OK || !s.p99OK || !s.throughputOK {
			return false
		}
	}
	return true
}

// judge compares ext-authz's rounds a with the baseline's rounds b, paired
// by index.
func judge(a, b []summary, lim limits) (verdict, error) {
	var v verdict
	if len(a) == 0 || len(a) != len(b) {
		return v, fmt.Errorf("need the same number (≥ 1) of ext-authz and baseline rounds, got %d and %d", len(a), len(b))
	}
	names := a[0].scenarios()
	if len(names) == 0 {
		return v, fmt.Errorf("no %s{scenario:...} in the summary: was it written by check.js (relative thresholds)?", latencyMetric)
	}
	for i := range a {
		if got := a[i].scenarios(); !slices.Equal(got, names) {
			return v, fmt.Errorf("ext-authz round %d has scenarios %v, round 1 %v", i+1, got, names)
		}
		if got := b[i].scenarios(); !slices.Equal(got, names) {
			return v, fmt.Errorf("baseline round %d has scenarios %v, ext-authz %v", i+1, got, names)
		}
		for _, c := range a[i].crossed() {
			v.crossed = append(v.crossed, fmt.Sprintf("ext-authz round %d: %s", i+1, c))
		}
		for _, c := range b[i].crossed() {
			v.crossed = append(v.crossed, fmt.Sprintf("baseline round %d: %s", i+1, c))
		}
	}
	for _, name := range names {
		m := fmt.Sprintf("%s{scenario:%s}", latencyMetric, name)
		d := fmt.Sprintf("dropped_iterations{scenario:%s}", name)
		s := scenarioVerdict{name: name}
		var aP50, aP99, bP50, bP99 []float64
		for i := range a {
			aP50 = append(aP50, a[i].value(m, "med"))
			aP99 = append(aP99, a[i].value(m, "p(99)"))
			bP50 = append(bP50, b[i].value(m, "med"))
			bP99 = append(bP99, b[i].value(m, "p(99)"))
			s.p99Ratios = append(s.p99Ratios, ratio(a[i].value(m, "p(99)"), b[i].value(m, "p(99)")))
			s.throughputRatios = append(s.throughputRatios, ratio(a[i].value(m, "count"), b[i].value(m, "count")))
			s.dropped += a[i].value(d, "count")
		}
		s.authzP50, s.authzP99 = median(aP50), median(aP99)
		s.baseP50, s.baseP99 = median(bP50), median(bP99)
		slackMS := float64(lim.slack) / float64(time.Millisecond)
		s.p50OK = s.authzP50 <= lim.k*s.baseP50+slackMS
		s.p99OK = s.authzP99 <= lim.k*s.baseP99+slackMS
		s.throughputOK = median(s.throughputRatios) >= lim.minThroughput
		v.scenarios = append(v.scenarios, s)
	}
	return v, nil
}

// ratio is x/y; a zero baseline with a non-zero x is +Inf (it fails every
// limit), 0/0 is 1 (nothing happened on either side).
func ratio(x, y float64) float64 {
	if y == 0 {
		if x == 0 {
			return 1
		}
		return math.Inf(1)
	}
	return x / y
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func passFail(ok bool) string {
	if ok {
		return "pass"
	}
	return "FAIL"
}

func (v verdict) print(w io.Writer, label string, lim limits) {
	slackMS := float64(lim.slack) / float64(time.Millisecond)
	rounds := 0
	if len(v.scenarios) > 0 {
		rounds = len(v.scenarios[0].p99Ratios)
	}
	fmt.Fprintf(w, "%s: ext-authz vs no-op, %d rounds; limits: p50 and p99 ≤ %.3gx no-op + %.3g ms, throughput ≥ %.3gx no-op (medians over rounds)\n",
		label, rounds, lim.k, slackMS, lim.minThroughput)
	fmt.Fprintf(w, "%-14s %-27s %-27s %28s %26s\n", "scenario", "p50 ms authz/no-op", "p99 ms authz/no-op", "p99 ratio median (range)", "throughput ratio (range)")
	worstP99, worstTput := 0.0, math.Inf(1)
	for _, s := range v.scenarios {
		lo, hi := slices.Min(s.p99Ratios), slices.Max(s.p99Ratios)
		tlo, thi := slices.Min(s.throughputRatios), slices.Max(s.throughputRatios)
		fmt.Fprintf(w, "%-14s %-27s %-27s %8.2fx (%.2f..%.2f) %8.3fx (%.3f..%.3f) %s",
			s.name,
			fmt.Sprintf("%.2f / %.2f %s", s.authzP50, s.baseP50, passFail(s.p50OK)),
			fmt.Sprintf("%.2f / %.2f %s", s.authzP99, s.baseP99, passFail(s.p99OK)),
			median(s.p99Ratios), lo, hi,
			median(s.throughputRatios), tlo, thi, passFail(s.throughputOK))
		if s.dropped > 0 {
			fmt.Fprintf(w, "  (ext-authz dropped %.0f)", s.dropped)
		}
		fmt.Fprintln(w)
		worstP99 = max(worstP99, median(s.p99Ratios))
		worstTput = min(worstTput, median(s.throughputRatios))
	}
	for _, c := range v.crossed {
		fmt.Fprintf(w, "correctness FAIL: %s\n", c)
	}
	fmt.Fprintf(w, "RESULT %s: %s; worst p99 ratio %.2fx, worst throughput ratio %.3fx, correctness %s\n",
		label, passFail(v.ok()), worstP99, worstTput, passFail(len(v.crossed) == 0))
}
