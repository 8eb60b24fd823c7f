package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"
)

// schedProbe is `authzload schedprobe`: a process that only sleeps a
// short tick in a loop and prints every wake-up that came more than
// -report late. It tells a stall of the machine (a run queue or a VM that
// does not run a process that only sleeps) from one inside the server: a
// load test round whose p99 is seconds while the probe, run beside it,
// also woke seconds late was not slowed by the server it measured
// (loadtest/stallhunt.sh, RESULTS.md "the first-round stall").
func schedProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("authzload schedprobe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tick := fs.Duration("tick", time.Millisecond, "how long each sleep is")
	report := fs.Duration("report", 30*time.Millisecond, "print a wake-up later than this after its sleep began")
	runFor := fs.Duration("for", 0, "stop after this long (0: until interrupted)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tick <= 0 || *report <= *tick {
		return errors.New("schedprobe: want 0 < -tick < -report")
	}
	if *runFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *runFor)
		defer cancel()
	}
	t := time.NewTimer(*tick)
	defer t.Stop()
	var worst time.Duration
	prev := time.Now()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintf(stdout, "schedprobe: worst wake-up %s after a %s sleep\n", ms(worst), *tick)
			return nil
		case <-t.C:
			// The time the process runs again, not the timer's own fire
			// time: a process the machine does not run is what this is for.
			now := time.Now()
			if d := now.Sub(prev); d > *report {
				fmt.Fprintf(stdout, "%s schedprobe: woke %s after a %s sleep\n", now.UTC().Format("15:04:05.000"), ms(d), *tick)
			}
			worst = max(worst, now.Sub(prev))
			prev = time.Now()
			t.Reset(*tick)
		}
	}
}
