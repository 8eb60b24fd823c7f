package server

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/ext-authz/ext-authz/internal/servicetest"
	"github.com/ext-authz/ext-authz/tokens/revocation"
)

// revocationProof runs TestRevocationProof: `make revocation-proof`.
var revocationProof = flag.Bool("revocation-proof", false, "run the long revocation measurement (docs/tokens.md, loadtest/RESULTS.md)")

// steady is sustained load on every replica of a fleet with warm, never
// revoked credentials.
type steady struct {
	runs []*loadRun
}

func (f *revFleet) steadyLoad(t *testing.T, creds []*cred, workers int) *steady {
	t.Helper()
	s := &steady{}
	for _, r := range f.replicas {
		s.runs = append(s.runs, startLoad(t, r.client, loadOptions{Workers: workers, CallTimeout: 2 * time.Second},
			func(w, i int) *authv3.CheckRequest { return creds[(w*7+i)%len(creds)].request() }))
	}
	return s
}

func (s *steady) stop() []callResult {
	var out []callResult
	for _, r := range s.runs {
		out = append(out, r.Stop()...)
	}
	return out
}

func (f *revFleet) cacheCounts(t *testing.T) (hit, miss float64) {
	t.Helper()
	for _, r := range f.replicas {
		fams := servicetest.Scrape(t, "http://"+r.proc.AdminAddr)
		h, _ := servicetest.Value(fams, "ext_authz_token_cache_requests_total", map[string]string{"result": "hit"})
		m, _ := servicetest.Value(fams, "ext_authz_token_cache_requests_total", map[string]string{"result": "miss"})
		hit, miss = hit+h, miss+m
	}
	return hit, miss
}

// fleetCPU is the CPU time the fleet's processes have used (Linux
// /proc/PID/stat utime+stime, in clock ticks of 10ms).
func (f *revFleet) fleetCPU(t *testing.T) time.Duration {
	t.Helper()
	var total time.Duration
	for _, r := range f.replicas {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", r.proc.Cmd.Process.Pid))
		if err != nil {
			t.Skipf("no /proc: %v", err)
		}
		fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		ut, _ := strconv.Atoi(fields[11])
		st, _ := strconv.Atoi(fields[12])
		total += time.Duration(ut+st) * 10 * time.Millisecond
	}
	return total
}

func pct(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(p float64) time.Duration { return s[min(len(s)-1, int(float64(len(s))*p))] }
	return fmt.Sprintf("n=%d p50=%s p99=%s max=%s", len(s), at(0.5).Round(10*time.Microsecond), at(0.99).Round(10*time.Microsecond), s[len(s)-1].Round(10*time.Microsecond))
}

func ok200(rs []callResult) int {
	n := 0
	for _, r := range rs {
		if r.Err == nil && r.HTTP == 200 {
			n++
		}
	}
	return n
}

// TestRevocationProof measures what issue 15 asks, on three replicas
// under steady load with warm caches: the write-to-first-401 latency of
// each kind on every replica, the cache hit rate and the throughput with
// revocation on against off (alternating rounds, same run), a flood of
// 10,000 revocations a second, and convergence after a Redis restart, a
// dropped subscription and a paused replica. Long: only with
// -revocation-proof.
func TestRevocationProof(t *testing.T) {
	if !*revocationProof {
		t.Skip("the long measurement runs with -revocation-proof (make revocation-proof)")
	}
	const maxStaleness = time.Second
	const workers = 4
	on := startRevFleet(t, 3, true, maxStaleness)
	off := startRevFleet(t, 3, false, maxStaleness)
	warmPool := func(f *revFleet) []*cred {
		var out []*cred
		for _, kind := range []string{"jwt", "ticket", "session"} {
			for range 10 {
				c := f.newCred(t, kind)
				f.warm(t, c)
				out = append(out, c)
			}
		}
		return out
	}
	poolOn, poolOff := warmPool(on), warmPool(off)

	// Throughput, revocation off against on, alternating 4s rounds.
	const round = 4 * time.Second
	var tput = map[bool][]float64{}
	for i := range 6 {
		enabled := i%2 == 1
		f, pool := off, poolOff
		if enabled {
			f, pool = on, poolOn
		}
		s := f.steadyLoad(t, pool, workers)
		time.Sleep(round)
		rs := s.stop()
		tput[enabled] = append(tput[enabled], float64(ok200(rs))/round.Seconds())
		if n := len(rs) - ok200(rs); n > 0 {
			t.Errorf("round %d (revocation %v): %d Checks not allowed: %s", i, enabled, n, summarize(rs))
		}
	}
	med := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	t.Logf("throughput (allowed Checks/s, 3 replicas x %d workers, median of 3 rounds of %s): revocation off %.0f, on %.0f: on/off = %.3f (rounds off %v, on %v)",
		workers, round, med(tput[false]), med(tput[true]), med(tput[true])/med(tput[false]), tput[false], tput[true])

	// Latency under steady load, with the cache hit rate over the phase.
	hit0, miss0 := on.cacheCounts(t)
	s := on.steadyLoad(t, poolOn, workers)
	lat := map[string][]time.Duration{}
	const trials = 25
	for range trials {
		for _, kind := range []string{"session", "ticket", "jwt", "subject"} {
			c := on.newCred(t, kind)
			on.warm(t, c)
			lat[kind] = append(lat[kind], on.revokeAndTime(t, c, maxStaleness)...)
		}
	}
	rs := s.stop()
	hit1, miss1 := on.cacheCounts(t)
	var all []time.Duration
	for _, kind := range []string{"session", "ticket", "jwt", "subject"} {
		t.Logf("write to first 401, %-8s on every replica: %s", kind, pct(lat[kind]))
		all = append(all, lat[kind]...)
	}
	t.Logf("write to first 401, all kinds: %s", pct(all))
	t.Logf("steady load meanwhile: %s; cache hit rate %.4f (%.0f hits, %.0f misses; the misses are the trial credentials' first sight)",
		summarize(rs), (hit1-hit0)/(hit1-hit0+miss1-miss0), hit1-hit0, miss1-miss0)

	// A flood of 10,000 revocations a second for 5s while the load runs:
	// Check latency and throughput against a window without it.
	hit0, miss0 = on.cacheCounts(t)
	cpu0 := on.fleetCPU(t)
	s = on.steadyLoad(t, poolOn, workers)
	time.Sleep(3 * time.Second)
	calmRes := s.stop()
	calmCPU := on.fleetCPU(t) - cpu0
	hit1, miss1 = on.cacheCounts(t)
	t.Logf("steady load alone (3s): cache hit rate %.4f (%.0f hits, %.0f misses)", (hit1-hit0)/(hit1-hit0+miss1-miss0), hit1-hit0, miss1-miss0)
	cpu0 = on.fleetCPU(t)
	s = on.steadyLoad(t, poolOn, workers)
	var written atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	const writers = 48
	floodStart := time.Now()
	for w := range writers {
		wg.Go(func() {
			tick := time.NewTicker(time.Second * writers / 10000)
			defer tick.Stop()
			for i := 0; ctx.Err() == nil; i++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if err := on.store.Revoke(ctx, time.Now(), revocation.Record{Kind: revocation.KindJTI, ID: fmt.Sprintf("flood-%d-%d", w, i), At: time.Now().Add(time.Hour).Unix()}); err == nil {
					written.Add(1)
				}
			}
		})
	}
	var floodLat []time.Duration
	for range 3 {
		time.Sleep(time.Second)
		c := on.newCred(t, "jwt")
		on.warm(t, c)
		floodLat = append(floodLat, on.revokeAndTime(t, c, maxStaleness)...)
	}
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	floodDur := time.Since(floodStart)
	floodRes := s.stop()
	floodCPU := on.fleetCPU(t) - cpu0
	t.Logf("replicas' CPU per 1,000 allowed Checks: without the flood %s, during it %s (the rest of the box: the flood's writers and Redis)",
		(calmCPU * 1000 / time.Duration(max(1, ok200(calmRes)))).Round(time.Microsecond), (floodCPU * 1000 / time.Duration(max(1, ok200(floodRes)))).Round(time.Microsecond))
	t.Logf("flood: %.0f revocations/s for %s", float64(written.Load())/floodDur.Seconds(), floodDur.Round(time.Millisecond))
	t.Logf("checks without the flood (3s): %s, %.0f allowed/s", summarize(calmRes), float64(ok200(calmRes))/3)
	t.Logf("checks during the flood (%s): %s, %.0f allowed/s", floodDur.Round(time.Millisecond), summarize(floodRes), float64(ok200(floodRes))/floodDur.Seconds())
	t.Logf("write to first 401 during the flood: %s", pct(floodLat))

	// Outages, 5 times each: convergence after the event, per replica.
	var afterKill, afterRestart, afterPause []time.Duration
	for range 5 {
		c := on.newCred(t, "ticket")
		on.warm(t, c)
		if _, err := on.redis.Do("CLIENT", "KILL", "TYPE", "normal"); err != nil {
			t.Fatal(err)
		}
		afterKill = append(afterKill, on.revokeAndTime(t, c, maxStaleness)...)

		on.redis.Restart()
		c = on.newCred(t, "jwt") // sessions died with Redis's data
		afterRestart = append(afterRestart, on.revokeAndTime(t, c, maxStaleness+3*time.Second)...)

		c = on.newCred(t, "jwt")
		on.warm(t, c)
		p := on.replicas[2].proc.Cmd.Process
		_ = p.Signal(syscall.SIGSTOP)
		w := time.Now()
		if err := on.store.Revoke(context.Background(), w, c.record); err != nil {
			_ = p.Signal(syscall.SIGCONT)
			t.Fatal(err)
		}
		time.Sleep(2 * maxStaleness)
		_ = p.Signal(syscall.SIGCONT)
		resumed := time.Now()
		for {
			if st, _ := on.replicas[2].status(c); st == 401 {
				break
			}
			if time.Since(resumed) > maxStaleness {
				t.Fatal("paused replica does not converge within max_staleness after SIGCONT")
			}
		}
		afterPause = append(afterPause, time.Since(resumed))
	}
	t.Logf("after CLIENT KILL (subscription dropped), write to first 401: %s", pct(afterKill))
	t.Logf("after a Redis restart (revoked as soon as written, the replicas reconnecting): %s", pct(afterRestart))
	t.Logf("replica paused (SIGSTOP) for 2s over the write: SIGCONT to its first 401: %s", pct(afterPause))
}
