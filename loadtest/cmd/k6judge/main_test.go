package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// round is one k6 run's per-scenario numbers, as check.js's handleSummary
// writes them.
type round struct {
	p50, p99 float64 // ms
	count    float64
	dropped  float64
	failed   []string // thresholds crossed, "metric condition"
}

// writeSummary writes a k6 handleSummary JSON with the given numbers for
// every scenario in names, in the shape k6 v1 writes (values by stat,
// thresholds by condition with ok).
func writeSummary(t *testing.T, dir, name string, names []string, r round) string {
	t.Helper()
	metrics := map[string]any{
		"transport_errors": map[string]any{
			"values":     map[string]float64{"rate": 0},
			"thresholds": map[string]any{"rate<0.01": map[string]bool{"ok": true}},
		},
	}
	for _, sc := range names {
		metrics[fmt.Sprintf("grpc_req_duration{scenario:%s}", sc)] = map[string]any{
			"type": "trend", "contains": "time",
			"values":     map[string]float64{"count": r.count, "med": r.p50, "p(99)": r.p99, "max": r.p99 * 2},
			"thresholds": map[string]any{"max>=0": map[string]bool{"ok": true}},
		}
		if r.dropped > 0 {
			metrics[fmt.Sprintf("dropped_iterations{scenario:%s}", sc)] = map[string]any{
				"values": map[string]float64{"count": r.dropped, "rate": 1},
			}
		}
		metrics[fmt.Sprintf("decision_expected{scenario:%s}", sc)] = map[string]any{
			"values":     map[string]float64{"rate": 1},
			"thresholds": map[string]any{"rate>0.99": map[string]bool{"ok": true}},
		}
	}
	for _, f := range r.failed {
		metric, cond, _ := strings.Cut(f, " ")
		metrics[metric] = map[string]any{
			"values":     map[string]float64{"rate": 0.5},
			"thresholds": map[string]any{cond: map[string]bool{"ok": false}},
		}
	}
	data, err := json.Marshal(map[string]any{"metrics": metrics, "root_group": map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRun(t *testing.T) {
	names := []string{"jwt_users", "ramp"}
	quick := round{p50: 0.5, p99: 4, count: 1000}
	tests := []struct {
		name       string
		authz      []round
		baseline   []round
		args       []string
		wantErr    error // nil: pass
		wantOutput []string
	}{
		{
			name:       "as fast as the baseline passes",
			authz:      []round{quick, quick, quick},
			baseline:   []round{quick, quick, quick},
			wantOutput: []string{"RESULT t: pass", "0.50 / 0.50 pass", "4.00 / 4.00 pass", "1.00x (1.00..1.00)"},
		},
		{
			name:       "within K times the baseline plus slack passes",
			authz:      []round{{p50: 1, p99: 9.9, count: 1000}, {p50: 1, p99: 9.9, count: 1000}, {p50: 1, p99: 9.9, count: 1000}},
			baseline:   []round{quick, quick, quick},
			wantOutput: []string{"RESULT t: pass"}, // 9.9 ≤ 2×4 + 2
		},
		{
			name:       "beyond K times the baseline plus slack fails",
			authz:      []round{{p50: 1, p99: 10.2, count: 1000}, {p50: 1, p99: 10.2, count: 1000}, {p50: 1, p99: 10.2, count: 1000}},
			baseline:   []round{quick, quick, quick},
			wantErr:    errFailed,
			wantOutput: []string{"RESULT t: FAIL", "10.20 / 4.00 FAIL", "2.55x (2.55..2.55)"},
		},
		{
			name:       "a larger K lets it pass",
			authz:      []round{{p50: 1, p99: 10.2, count: 1000}, {p50: 1, p99: 10.2, count: 1000}, {p50: 1, p99: 10.2, count: 1000}},
			baseline:   []round{quick, quick, quick},
			args:       []string{"-k", "3"},
			wantOutput: []string{"RESULT t: pass"},
		},
		{
			name: "one stalled round out of three does not decide",
			authz: []round{
				{p50: 200, p99: 2300, count: 600, dropped: 400},
				quick, quick,
			},
			baseline:   []round{quick, quick, quick},
			wantOutput: []string{"RESULT t: pass", "4.00 / 4.00 pass", "1.00x (1.00..575.00)", "(ext-authz dropped 400)"},
		},
		{
			name:  "a stall in the baseline's round does not fail ext-authz",
			authz: []round{quick, quick, quick},
			baseline: []round{
				{p50: 300, p99: 1400, count: 650, dropped: 350},
				quick, quick,
			},
			wantOutput: []string{"RESULT t: pass", "1.000x (1.000..1.538) pass"},
		},
		{
			// what a server that answers 5 ms later does (measured with
			// noopauthz -delay 5ms, loadtest/RESULTS.md): the p99 stays
			// within its limit, the median does not
			name:       "a uniform slowdown fails on p50",
			authz:      []round{{p50: 5.5, p99: 8.3, count: 1000}, {p50: 5.5, p99: 8.3, count: 1000}, {p50: 5.5, p99: 8.3, count: 1000}},
			baseline:   []round{quick, quick, quick},
			wantErr:    errFailed,
			wantOutput: []string{"5.50 / 0.50 FAIL", "8.30 / 4.00 pass", "RESULT t: FAIL"},
		},
		{
			name:     "slow in two rounds of three fails",
			authz:    []round{{p50: 5, p99: 40, count: 1000}, {p50: 5, p99: 40, count: 1000}, quick},
			baseline: []round{quick, quick, quick},
			wantErr:  errFailed,
		},
		{
			name:       "falling behind (dropped iterations) fails on throughput",
			authz:      []round{{p50: 0.5, p99: 4, count: 900, dropped: 100}, {p50: 0.5, p99: 4, count: 900, dropped: 100}, quick},
			baseline:   []round{quick, quick, quick},
			wantErr:    errFailed,
			wantOutput: []string{"0.900x (0.900..1.000) FAIL"},
		},
		{
			name:       "a crossed correctness threshold fails however fast",
			authz:      []round{quick, {p50: 0.5, p99: 4, count: 1000, failed: []string{"decision_expected{scenario:jwt_users} rate>0.99"}}, quick},
			baseline:   []round{quick, quick, quick},
			wantErr:    errFailed,
			wantOutput: []string{"correctness FAIL: ext-authz round 2: decision_expected{scenario:jwt_users} rate>0.99", "correctness FAIL"},
		},
		{
			name:       "transport errors against the baseline fail the run",
			authz:      []round{quick, quick, quick},
			baseline:   []round{quick, quick, {p50: 0.5, p99: 4, count: 1000, failed: []string{"transport_errors rate<0.01"}}},
			wantErr:    errFailed,
			wantOutput: []string{"correctness FAIL: baseline round 3: transport_errors rate<0.01"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var a, b []string
			for i, r := range tt.authz {
				a = append(a, writeSummary(t, dir, fmt.Sprintf("a%d.json", i), names, r))
			}
			for i, r := range tt.baseline {
				b = append(b, writeSummary(t, dir, fmt.Sprintf("b%d.json", i), names, r))
			}
			args := append([]string{"-label", "t", "-authz", strings.Join(a, ","), "-baseline", strings.Join(b, ",")}, tt.args...)
			var stdout, stderr bytes.Buffer
			err := run(args, &stdout, &stderr)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("run: %v, want %v\n%s%s", err, tt.wantErr, stdout.String(), stderr.String())
			}
			for _, w := range tt.wantOutput {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, stdout.String())
				}
			}
		})
	}
}

func TestRunBadInput(t *testing.T) {
	dir := t.TempDir()
	names := []string{"jwt_users"}
	one := writeSummary(t, dir, "one.json", names, round{p50: 1, p99: 2, count: 10})
	other := writeSummary(t, dir, "other.json", []string{"ramp"}, round{p50: 1, p99: 2, count: 10})
	notJSON := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(notJSON, []byte("k6 (authz): all thresholds passed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.json")
	if err := os.WriteFile(empty, []byte(`{"metrics":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		give    []string
		wantErr string
	}{
		{name: "no summaries", give: nil, wantErr: "-authz: no summaries given"},
		{name: "uneven rounds", give: []string{"-authz", one + "," + one, "-baseline", one}, wantErr: "2 ext-authz rounds but 1 baseline rounds"},
		{name: "missing file", give: []string{"-authz", filepath.Join(dir, "nope.json"), "-baseline", one}, wantErr: "no such file"},
		{name: "not JSON", give: []string{"-authz", notJSON, "-baseline", one}, wantErr: "bad.json"},
		{name: "no metrics", give: []string{"-authz", empty, "-baseline", one}, wantErr: "no metrics"},
		{name: "different scenarios", give: []string{"-authz", one, "-baseline", other}, wantErr: "baseline round 1 has scenarios [ramp]"},
		{name: "K below 1", give: []string{"-k", "0.5", "-authz", one, "-baseline", one}, wantErr: "-k must be ≥ 1"},
		{name: "throughput above 1", give: []string{"-min-throughput", "1.5", "-authz", one, "-baseline", one}, wantErr: "-min-throughput"},
		{name: "stray argument", give: []string{"-authz", one, "-baseline", one, "extra"}, wantErr: "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(tt.give, &stdout, &stderr)
			if err == nil || errors.Is(err, errFailed) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("run: %v, want an input error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestMedianAndRatio(t *testing.T) {
	tests := []struct {
		give []float64
		want float64
	}{
		{give: []float64{3}, want: 3},
		{give: []float64{5, 1, 3}, want: 3},
		{give: []float64{4, 1, 3, 2}, want: 2.5},
		{give: []float64{1000, 1, 2}, want: 2},
	}
	for _, tt := range tests {
		if got := median(tt.give); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.give, got, tt.want)
		}
	}
	if got := ratio(0, 0); got != 1 {
		t.Errorf("ratio(0, 0) = %v, want 1", got)
	}
	if got := ratio(1, 0); got < 1e300 {
		t.Errorf("ratio(1, 0) = %v, want +Inf", got)
	}
	lim := limits{k: 2, slack: 3 * time.Millisecond, minThroughput: 0.97}
	if _, err := judge(nil, nil, lim); err == nil {
		t.Error("judge with no rounds: no error")
	}
}
