package servicetest

import (
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/ext-authz/ext-authz/internal/redislog"
)

// Main is TestMain for the packages that run the service: it runs the
// tests, removes the binary Binary built, and fails the run if any test
// left a goroutine behind (every server, load run and Redis client a test
// starts must be stopped by it). It does not return.
func Main(m *testing.M) {
	// go-redis logs every failed dial through a global logger; the Redis
	// outage tests cause thousands. The binary throttles them the same way.
	redis.SetLogger(redislog.New(slog.New(slog.DiscardHandler)))
	code := m.Run()
	RemoveBinary()
	if code == 0 {
		err := goleak.Find()
		if err != nil {
			// go-redis's dial prober (pool.tryDial, started while Redis
			// was down) sleeps a second between attempts and sees that its
			// client was closed only when it wakes: give it that second.
			time.Sleep(1500 * time.Millisecond)
			err = goleak.Find()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines left after the tests:\n%v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
