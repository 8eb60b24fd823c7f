package authz

import (
	"runtime"
	"testing"
	"time"
)

// TestPipelineKeepsNoRuleConfig: once NewPipeline returns, the rules as
// configured ([]RuleConfig and what only they point to) can be collected
// while the pipeline lives; it keeps only its compiled form.
func TestPipelineKeepsNoRuleConfig(t *testing.T) {
	cfg := benchConfig(1000)
	freed := make(chan struct{}, 2)
	runtime.AddCleanup(&cfg.Rules[0], func(ch chan struct{}) { ch <- struct{}{} }, freed)
	runtime.AddCleanup(&cfg.Rules[8].Match.Hosts[0], func(ch chan struct{}) { ch <- struct{}{} }, freed)
	p, err := NewPipeline(cfg, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg = Config{}
	deadline := time.After(5 * time.Second)
	for got := 0; got < 2; {
		runtime.GC()
		select {
		case <-freed:
			got++
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("the pipeline still references its []RuleConfig (%d of 2 objects collected)", got)
		}
	}
	if i := p.first(benchHost(0), "/r8/items/1", "GET", nil); i < 0 || p.rule(i).name != "r8" {
		t.Fatalf("pipeline after its config was collected: matched rule %d, want r8", i)
	}
	runtime.KeepAlive(p)
}
