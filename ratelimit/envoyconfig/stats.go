package envoyconfig

import (
	gostats "github.com/lyft/gostats"

	"github.com/envoyproxy/ratelimit/src/stats"
)

// nopStats is the stats.Manager the library's config package requires. It
// hands out counters that discard everything.
//
// Not the library's own stats.NewStatManager: that keeps one counter per
// distinct key in a gostats store for the life of the process, and with
// detailed_metric or value_to_metric a key holds request values, so memory
// would grow with every new user or address. Our metrics live in
// ratelimit/metrics.go on an injected registry instead.
type nopStats struct{}

var (
	_        stats.Manager   = nopStats{}
	nopStore                 = gostats.NewStore(gostats.NewNullSink(), false)
	nopCount gostats.Counter = nopCounter{}
)

func (nopStats) NewStats(key string) stats.RateLimitStats {
	return stats.RateLimitStats{
		Key: key, TotalHits: nopCount, OverLimit: nopCount, NearLimit: nopCount,
		OverLimitWithLocalCache: nopCount, WithinLimit: nopCount, ShadowMode: nopCount,
	}
}

func (nopStats) NewDomainStats(domain string) stats.DomainStats {
	return stats.DomainStats{Key: domain, NotFound: nopCount}
}

func (nopStats) NewShouldRateLimitStats() stats.ShouldRateLimitStats {
	return stats.ShouldRateLimitStats{RedisError: nopCount, ServiceError: nopCount}
}

func (nopStats) NewServiceStats() stats.ServiceStats {
	return stats.ServiceStats{
		ConfigLoadSuccess: nopCount, ConfigLoadError: nopCount,
		ShouldRateLimit: nopStats{}.NewShouldRateLimitStats(), GlobalShadowMode: nopCount,
	}
}

func (nopStats) GetStatsStore() gostats.Store { return nopStore }

// nopCounter discards.
type nopCounter struct{}

func (nopCounter) Add(uint64)     {}
func (nopCounter) Inc()           {}
func (nopCounter) Set(uint64)     {}
func (nopCounter) String() string { return "0" }
func (nopCounter) Value() uint64  { return 0 }
func (nopCounter) Latch() uint64  { return 0 }
