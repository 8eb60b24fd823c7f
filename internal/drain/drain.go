// Package drain stops a process's servers in the order a load balancer
// needs: the caller first stops advertising (health NOT_SERVING), then Run
// keeps serving for Options.Delay so the balancer notices, lets the calls
// in flight finish for up to Options.Timeout, and cuts the rest. It knows
// servers only by the Server interface, so every transport drains the
// same way: *grpc.Server is one as it is, an HTTP server needs a small
// adapter (Shutdown for GracefulStop, Close for Stop).
package drain

import (
	"sync"
	"time"
)

// Server is one listening server, stopped in two steps.
type Server interface {
	// GracefulStop stops taking new calls and returns when the calls in
	// flight have finished, or once Stop has ended them.
	GracefulStop()
	// Stop ends the calls still in flight. Run calls it while
	// GracefulStop may still be running.
	Stop()
}

// Options are the drain's two bounds; the zero value stops at once,
// without grace.
type Options struct {
	// Delay is how long servers keep serving after the caller stopped
	// advertising them.
	Delay time.Duration
	// Timeout bounds how long the calls in flight may take to finish.
	Timeout time.Duration
	// OnTimeout, if set, runs when Timeout passed with calls still in
	// flight, before they are ended.
	OnTimeout func()
}

// Run waits Options.Delay, gracefully stops every server at once, and
// when they have not all stopped after Options.Timeout, calls OnTimeout
// and Stop on each. It returns once every GracefulStop has returned; it
// reports whether calls were cut.
func Run(o Options, servers ...Server) (cut bool) {
	time.Sleep(o.Delay)

	stopped := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.GracefulStop()
		}()
	}
	go func() {
		wg.Wait()
		close(stopped)
	}()

	timer := time.NewTimer(o.Timeout)
	defer timer.Stop()
	select {
	case <-stopped:
		return false
	case <-timer.C:
	}
	if o.OnTimeout != nil {
		o.OnTimeout()
	}
	for _, s := range servers {
		s.Stop()
	}
	<-stopped
	return true
}
