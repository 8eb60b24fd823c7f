package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ext-authz/ext-authz/ratelimit"
)

// decideScript runs one decision op (ratelimit.Op.Windows): every window
// of a descriptor, in one slot (AppendWindowKey's hash tag), decided and
// charged atomically with the server's clock. It mirrors
// ratelimit.SlidingDecide, ratelimit.GCRADecide and the fixed-window rule
// of the Store contract; the contract suite runs the same cases against
// this script and ratelimit/memory.
//
// ARGV: algorithm (0 fixed, 1 sliding, 2 gcra), hits, then per key: limit,
// period (µs), shadow (0/1). Reply: denied, then per key: over, remaining,
// reset (µs).
var decideScript = goredis.NewScript(`
local alg = tonumber(ARGV[1])
local hits = tonumber(ARGV[2])
local now = 0
if alg ~= 0 then -- fixed windows have their start in the key
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local n = #KEYS
local out = {0}
local nextv = {}
local nextttl = {}
local denied = false
for i = 1, n do
  local k = KEYS[i]
  local limit = tonumber(ARGV[3*i])
  local period = tonumber(ARGV[3*i+1])
  local shadow = ARGV[3*i+2] == '1'
  local over, rem, reset = false, 0, 0
  if alg == 1 then
    local w, c, p = 0, 0, 0
    local v = redis.call('GET', k)
    if v then
      local a, b, d = string.match(v, '^(%d+):(%d+):(%d+)$')
      if a then w, c, p = tonumber(a), tonumber(b), tonumber(d) end
    end
    local idx = math.floor(now / period)
    local cur, prev = 0, 0
    if w == idx then cur, prev = c, p elseif w == idx - 1 then prev = c end
    local e = now - idx * period
    local used = cur + math.ceil(prev * (period - e) / period)
    if used + hits > limit then
      over = true
      if used < limit then rem = limit - used end
      if cur + hits <= limit and prev > 0 then
        local at = period - math.floor((limit - cur - hits) * period / prev)
        reset = math.max(1, at - e)
      elseif hits > limit then
        reset = period
      else
        reset = period - e
        if cur > 0 then
          local at = period - math.floor((limit - hits) * period / cur)
          reset = reset + math.max(0, at)
        end
        reset = math.max(1, reset)
      end
    else
      rem = limit - used - hits
      reset = period - e
    end
    nextv[i] = string.format('%d:%d:%d', idx, cur + hits, prev)
    nextttl[i] = math.ceil(2 * period / 1000)
  elseif alg == 2 then
    local tat = tonumber(redis.call('GET', k) or '0') or 0
    local iv = period
    if limit > 0 then iv = math.max(1, math.floor(period / limit)) end
    local burst = limit * iv
    if tat < now then tat = now end
    local nx = tat + hits * iv
    if nx - now > burst then
      over = true
      if tat - now < burst then rem = math.floor((burst - (tat - now)) / iv) end
      reset = math.min(nx - now - burst, period)
      if hits > limit then reset = period end
    else
      rem = math.floor((burst - (nx - now)) / iv)
      reset = nx - now
    end
    nextv[i] = string.format('%d', nx)
    nextttl[i] = math.ceil((nx - now) / 1000) + 1
  else
    -- Charged first and taken back below on a denial (one command in
    -- the common case instead of GET and INCRBY; the script is atomic,
    -- so no one sees the interim count).
    local c
    if hits > 0 then
      c = redis.call('INCRBY', k, hits)
      if c == hits then
        -- Created by this script: give it its expiry in the same step.
        redis.call('PEXPIRE', k, math.ceil(period / 1000))
      end
      c = c - hits
    else
      c = tonumber(redis.call('GET', k) or '0') or 0
    end
    if c + hits > limit then
      over = true
      if c < limit then rem = limit - c end
    else
      rem = limit - c - hits
    end
    nextv[i] = false
  end
  if over then
    -- A smooth window charges only the hits that fit it, as
    -- SlidingDecide and GCRADecide (and ratelimit/memory) do: a shadow
    -- window over its limit keeps its state, else it would be charged
    -- hits an enforced one refuses and stay over long after the burst.
    nextv[i] = false
    if not shadow then denied = true end
  end
  out[#out+1] = over and 1 or 0
  out[#out+1] = rem
  out[#out+1] = reset
end
if denied then
  -- Nothing is charged: the windows that fit keep their hits, and the
  -- fixed windows charged above are taken back.
  out[1] = 1
  for i = 1, n do
    if out[3*i-1] == 0 then out[3*i] = out[3*i] + hits end
    if alg == 0 and hits > 0 then redis.call('DECRBY', KEYS[i], hits) end
  end
elseif hits > 0 then
  for i = 1, n do
    if nextv[i] then
      redis.call('SET', KEYS[i], nextv[i], 'PX', nextttl[i])
    end
  end
end
return out
`)

// evalDecide queues the decision script for op: by its SHA, or with its
// body.
func evalDecide(ctx context.Context, p goredis.Pipeliner, op *ratelimit.Op, bySHA bool) goredis.Cmder {
	keys := make([]string, len(op.Windows))
	args := make([]any, 0, 2+3*len(op.Windows))
	// Integers, not strings: go-redis writes them in decimal, and boxing
	// a small one costs no allocation.
	args = append(args, int(op.Algorithm), op.Hits)
	for i := range op.Windows {
		w := &op.Windows[i]
		keys[i] = w.Key
		shadow := 0
		if w.Shadow {
			shadow = 1
		}
		args = append(args, w.Limit, max(1, w.Period.Microseconds()), shadow)
	}
	if bySHA {
		return decideScript.EvalSha(ctx, p, keys, args...)
	}
	return decideScript.Eval(ctx, p, keys, args...)
}

// decideResults is how many numbers the reply of a decision op holds.
func decideResults(op *ratelimit.Op) int { return 1 + 3*len(op.Windows) }

// decisionReply reads a decision script's reply into dst (len
// decideResults), without the copy Int64Slice makes.
func decisionReply(cmd *goredis.Cmd, dst []int64) error {
	vals, err := cmd.Slice()
	if err != nil {
		return err
	}
	if len(vals) != len(dst) {
		return fmt.Errorf("decision reply of %d numbers, want %d", len(vals), len(dst))
	}
	for i, v := range vals {
		n, ok := v.(int64)
		if !ok {
			return fmt.Errorf("decision reply: %T in place %d, want an integer", v, i)
		}
		dst[i] = n
	}
	return nil
}

// setDecision copies a decision reply into op.
func setDecision(op *ratelimit.Op, r []int64) {
	op.Denied = r[0] == 1
	for i := range op.Windows {
		v := &op.Windows[i].Verdict
		v.Over = r[1+3*i] == 1
		v.Remaining = uint64(max(0, r[2+3*i]))
		v.ResetAfter = time.Duration(r[3+3*i]) * time.Microsecond
	}
}
