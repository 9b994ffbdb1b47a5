/*
 * redis_lua.c -- the Lua of the Redis store: one fragment per algorithm
 * family, a shared prelude and driver, and from them, in two forms, the
 * three entries (apply, peek, refund; calling convention in
 * redis_scripts.h): three scripts for EVALSHA and EVAL, and one function
 * library for FUNCTION LOAD and FCALL, named after the hash of its text.
 * Both forms hold the same definitions and the same entry bodies.
 *
 * Every fragment is the Lua twin of its C file (bucket.c,
 * window.c, calendar.c, algo.c): the same clamps, the same branches,
 * the same rounding, so that the same history of requests and clocks gives
 * the same decisions, remaining, reset and retry_after.  Keep them in step.
 *
 * Lua numbers are doubles: integers are exact below 2^53 (the C side keeps
 * every parameter below 2^50), "/" is a float division (idivmod() corrects
 * its last-bit error), and a product of two large factors can leave the
 * exact range (muldiv() computes it exactly).  Numbers are written to
 * Redis with '%d', never with tostring's "%.14g".
 *
 * A script's whole chunk runs on every EVAL, so each family is wrapped in
 * a loader (LOAD.x) that a call runs only for the algorithms it meets:
 * defining every family's functions each time cost more than deciding.  A
 * library's top level runs once, at FUNCTION LOAD, and its functions keep
 * the families they loaded (FAM holds only pure functions) and what they
 * learnt of the arguments (DESC: what a layer's text means, the same on
 * every request for a limit); what is per request (KEYS, ARGV, STATES)
 * is set again by every call.
 * Measured with callgrind on redis-server 7.0: each argument of a call,
 * each tonumber, each string.format and each table made costs Redis
 * about a thousand instructions, and a token bucket's whole call was
 * 185,000, so the driver makes few of each.
 *
 * State of the string-valued families is "n1:n2:..." in one key, read once
 * per script and written once at the end with an absolute expiry (PXAT):
 * the instant from which the state means the same as no state at all, so
 * Redis forgets it exactly when nothing depends on it.  The clock is the
 * script's, so a test clock ahead of the real one never loses live state.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "redis_scripts.h"
#include "base/sha256.h"

/* ---- prelude: arithmetic, results, string state ---- */
/* The Lua is kept one Lua line to a C line, and the fragments are
 * spliced where the Lua needs them: clang-format would join and re-wrap
 * them, which Lua does not mind but a reader would. */
/* clang-format off */
#define RL2_LUA_PRELUDE \
    "local floor, fmt\n" \
    "local TWO53 = 9007199254740992\n" \
    "local NOW_MAX = TWO53\n" \
    "local EXACT = 1125899906842624\n" \
    "local COUNT_MAX = 2305843009213693951\n" \
    "local US_PER_DAY = 86400000000\n" \
    "local FAM, LOAD = {}, {}\n" \
    "local function max(a, b) if a > b then return a end return b end\n" \
    "local function min(a, b) if a < b then return a end return b end\n" \
    "local function clamp(v, lo, hi) return max(lo, min(v, hi)) end\n" \
    "local function num(x) return fmt('%d', x) end\n" \
    "local function idivmod(a, b)\n" \
    "  local q = floor(a / b)\n" \
    "  local r = a - q * b\n" \
    "  if r < 0 then return q - 1, r + b end\n" \
    "  if r >= b then return q + 1, r - b end\n" \
    "  return q, r\n" \
    "end\n" \
    "local function idiv(a, b) return (idivmod(a, b)) end\n" \
    RL2_LUA_MULDIV \
    "local function result(ok, limit, remaining, reset, retry)\n" \
    "  if ok then retry = 0 else retry = max(retry, 1) end\n" \
    "  return { ok and 1 or 0, limit, max(remaining, 0), max(reset, 0),\n" \
    "           retry }\n" \
    "end\n" \
    "local function counter(limit, count, cost, reset, retry)\n" \
    "  if count + cost <= limit then\n" \
    "    if count + cost <= 0 then reset = 0 end\n" \
    "    return result(true, limit, limit - count - cost, reset, 0)\n" \
    "  end\n" \
    "  return result(false, limit, limit - count, reset, retry)\n" \
    "end\n" \
    RL2_LUA_STRING_STATE

/* floor(a * b / c) and the remainder, exact whenever the quotient is below
 * 2^53 and c below 2^52: reduce both factors modulo c, then multiply the
 * remainders bit by bit (each step stays below 2c). */
#define RL2_LUA_MULDIV \
    "local function mulmod_lt(x, y, c)\n" \
    "  local q, r, bit = 0, 0, 1\n" \
    "  while bit * 2 <= y do bit = bit * 2 end\n" \
    "  while bit >= 1 do\n" \
    "    q, r = q * 2, r * 2\n" \
    "    if r >= c then q, r = q + 1, r - c end\n" \
    "    if y >= bit then\n" \
    "      y, r = y - bit, r + x\n" \
    "      if r >= c then q, r = q + 1, r - c end\n" \
    "    end\n" \
    "    bit = bit / 2\n" \
    "  end\n" \
    "  return q, r\n" \
    "end\n" \
    "local function muldiv(a, b, c)\n" \
    "  local p = a * b\n" \
    "  if p < TWO53 then return idivmod(p, c) end\n" \
    "  local qa, ra = idivmod(a, c)\n" \
    "  local qb, rb = idivmod(b, c)\n" \
    "  local q, r = mulmod_lt(ra, rb, c)\n" \
    "  return qa * qb * c + qa * rb + ra * qb + q, r\n" \
    "end\n"

/* A state key is read once (GET) into st.v and written once (save).  A
 * commit sets an expiry, a refund keeps the key's (KEEPTTL) or sets an
 * earlier one; an expiry already past deletes the key.  Per call, so
 * cheap: st is made with every field it will get (a table that grows is
 * rehashed), a one-number state is read with one tonumber and not
 * split, and a state (one to three numbers) is written with one
 * string.format, whose every call costs Redis about a microsecond. */
#define RL2_LUA_STRING_STATE \
    "local SFMT = { '%d', '%d:%d', '%d:%d:%d' }\n" \
    "local function load(key)\n" \
    "  local raw = redis.call('GET', key)\n" \
    "  local v, x = {}, raw and tonumber(raw)\n" \
    "  if x then\n" \
    "    v = { x }\n" \
    "  elseif raw then\n" \
    "    for part in string.gmatch(raw, '[^:]+') do\n" \
    "      v[#v + 1] = tonumber(part) or 0\n" \
    "    end\n" \
    "  end\n" \
    "  return { key = key, v = v, exists = raw and true or false,\n" \
    "           save = false, exp = false, dirty = false, keep = false,\n" \
    "           del = false }\n" \
    "end\n" \
    "local function get(st, i) return st.v[i] or 0 end\n" \
    "local function put(st, v, exp)\n" \
    "  st.v, st.exp, st.keep, st.dirty = v, exp, false, true\n" \
    "end\n" \
    "local function put_keep(st, v)\n" \
    "  st.v, st.keep, st.dirty = v, true, true\n" \
    "end\n" \
    "local function save(st)\n" \
    "  if not st.dirty then return end\n" \
    "  local ms = idiv((st.exp or 0) + 999, 1000)\n" \
    "  if st.del or (not st.keep and ms < 1) then\n" \
    "    redis.call('DEL', st.key)\n" \
    "    return\n" \
    "  end\n" \
    "  local val = fmt(SFMT[#st.v], unpack(st.v))\n" \
    "  if st.keep then\n" \
    "    redis.call('SET', st.key, val, 'KEEPTTL')\n" \
    "  else\n" \
    "    redis.call('SET', st.key, val, 'PXAT', num(ms))\n" \
    "  end\n" \
    "end\n"

/* ---- token_bucket (0) and leaky_bucket (4): bucket.c ----
 * token_bucket keeps { tat } and expires at tat (the bucket is full
 * again); leaky_bucket keeps { level, last } and expires when drained.
 * bucket(p) is asked four times a call: its answer is kept in p (bt,
 * bcap, bcap_us), which a function library keeps from call to call.  It
 * is defined outside the family's loader because the token bucket's
 * short path (RL2_LUA_TB_SHORT) asks it too. */
#define RL2_LUA_BUCKETS \
    "local function bucket(p)\n" \
    "  if p.bt then return p.bt, p.bcap, p.bcap_us end\n" \
    "  local t = idiv(p.window, p.limit)\n" \
    "  if t * p.limit < p.window then t = t + 1 end\n" \
    "  local cap = p.limit\n" \
    "  if p.burst > 0 then cap = p.burst end\n" \
    "  p.bt, p.bcap, p.bcap_us = t, cap, cap * t\n" \
    "  return t, cap, cap * t\n" \
    "end\n" \
    "LOAD.b = function()\n" \
    "local function bucket_decide(p, debt, cost)\n" \
    "  local t, cap, cap_us = bucket(p)\n" \
    "  local after = debt + cost * t\n" \
    "  if after <= cap_us then\n" \
    "    return result(true, cap, idiv(cap_us - after, t), after, 0)\n" \
    "  end\n" \
    "  return result(false, cap, idiv(max(cap_us - debt, 0), t), debt,\n" \
    "                after - cap_us)\n" \
    "end\n" \
    "local function forgive(p, now, committed, cost)\n" \
    "  return max(cost * bucket(p) - max(now - committed, 0), 0)\n" \
    "end\n" \
    "local function tb_tat(p, st)\n" \
    "  local _, _, cap_us = bucket(p)\n" \
    "  return clamp(get(st, 1), 0, NOW_MAX + cap_us)\n" \
    "end\n" \
    "FAM[0] = {\n" \
    "  check = function(p, st, now, cost)\n" \
    "    return bucket_decide(p, max(tb_tat(p, st) - now, 0), cost)\n" \
    "  end,\n" \
    "  commit = function(p, st, now, cost)\n" \
    "    local tat = max(tb_tat(p, st), now) + cost * bucket(p)\n" \
    "    put(st, { tat }, tat)\n" \
    "  end,\n" \
    "  refund = function(p, st, now, committed, cost)\n" \
    "    local tat = tb_tat(p, st)\n" \
    "    if tat > now then\n" \
    "      tat = max(tat - forgive(p, now, committed, cost), now)\n" \
    "      put(st, { tat }, tat)\n" \
    "    end\n" \
    "  end\n" \
    "}\n" \
    "local function lb_view(p, st, now)\n" \
    "  local _, _, cap_us = bucket(p)\n" \
    "  local last = clamp(get(st, 2), 0, NOW_MAX)\n" \
    "  local level = clamp(get(st, 1), 0, cap_us)\n" \
    "  return max(level - max(now - last, 0), 0), last\n" \
    "end\n" \
    "FAM[4] = {\n" \
    "  check = function(p, st, now, cost)\n" \
    "    return bucket_decide(p, (lb_view(p, st, now)), cost)\n" \
    "  end,\n" \
    "  commit = function(p, st, now, cost)\n" \
    "    local level, last = lb_view(p, st, now)\n" \
    "    level, last = level + cost * bucket(p), max(last, now)\n" \
    "    put(st, { level, last }, last + level)\n" \
    "  end,\n" \
    "  refund = function(p, st, now, committed, cost)\n" \
    "    local level, last = lb_view(p, st, now)\n" \
    "    level = max(level - forgive(p, now, committed, cost), 0)\n" \
    "    last = max(last, now)\n" \
    "    put(st, { level, last }, last + level)\n" \
    "  end\n" \
    "}\n" \
    "end\n"

/* ---- fixed_window (3) and quota (6): window.c, calendar.c ----
 * { span start, count }, expiring at the span's end.  Quota spans are UTC
 * calendar days and months (civil-day arithmetic after Howard Hinnant). */
#define RL2_LUA_SPANS \
    "LOAD.s = function()\n" \
    "local function days_from_civil(y, m, d)\n" \
    "  if m <= 2 then y = y - 1 end\n" \
    "  local era = idiv(y, 400)\n" \
    "  local yoe = y - era * 400\n" \
    "  local mp = m + 9\n" \
    "  if m > 2 then mp = m - 3 end\n" \
    "  local doy = idiv(153 * mp + 2, 5) + d - 1\n" \
    "  local doe = yoe * 365 + idiv(yoe, 4) - idiv(yoe, 100) + doy\n" \
    "  return era * 146097 + doe - 719468\n" \
    "end\n" \
    "local function civil_from_days(z)\n" \
    "  z = z + 719468\n" \
    "  local era = idiv(z, 146097)\n" \
    "  local doe = z - era * 146097\n" \
    "  local yoe = idiv(doe - idiv(doe, 1460) + idiv(doe, 36524)\n" \
    "                   - idiv(doe, 146096), 365)\n" \
    "  local doy = doe - (365 * yoe + idiv(yoe, 4) - idiv(yoe, 100))\n" \
    "  local mp = idiv(5 * doy + 2, 153)\n" \
    "  local m = mp - 9\n" \
    "  if mp < 10 then m = mp + 3 end\n" \
    "  local y = yoe + era * 400\n" \
    "  if m <= 2 then y = y + 1 end\n" \
    "  return y, m\n" \
    "end\n" \
    "local function span_bounds(p, t)\n" \
    "  if p.algo ~= 6 then\n" \
    "    local s = idiv(t, p.window) * p.window\n" \
    "    return s, s + p.window\n" \
    "  end\n" \
    "  t = clamp(t, -NOW_MAX, NOW_MAX)\n" \
    "  local days = idiv(t, US_PER_DAY)\n" \
    "  if p.period == 1 then\n" \
    "    return days * US_PER_DAY, (days + 1) * US_PER_DAY\n" \
    "  end\n" \
    "  if p.period ~= 2 then return t, t end\n" \
    "  local y, m = civil_from_days(days)\n" \
    "  local e\n" \
    "  if m == 12 then\n" \
    "    e = days_from_civil(y + 1, 1, 1)\n" \
    "  else\n" \
    "    e = days_from_civil(y, m + 1, 1)\n" \
    "  end\n" \
    "  return days_from_civil(y, m, 1) * US_PER_DAY, e * US_PER_DAY\n" \
    "end\n" \
    "local function span_view(p, st, now)\n" \
    "  local stored = clamp(get(st, 1), 0, NOW_MAX)\n" \
    "  local s, e = span_bounds(p, now)\n" \
    "  if s > stored then return s, e, 0 end\n" \
    "  s, e = span_bounds(p, stored)\n" \
    "  return s, e, clamp(get(st, 2), 0, p.limit)\n" \
    "end\n" \
    "FAM[3] = {\n" \
    "  check = function(p, st, now, cost)\n" \
    "    local _, e, count = span_view(p, st, now)\n" \
    "    return counter(p.limit, count, cost, e - now, e - now)\n" \
    "  end,\n" \
    "  commit = function(p, st, now, cost)\n" \
    "    local s, e, count = span_view(p, st, now)\n" \
    "    put(st, { s, count + cost }, e)\n" \
    "  end,\n" \
    "  refund = function(p, st, now, committed, cost)\n" \
    "    local stored = clamp(get(st, 1), 0, NOW_MAX)\n" \
    "    if span_bounds(p, committed) == stored then\n" \
    "      local count = clamp(get(st, 2), 0, p.limit)\n" \
    "      put_keep(st, { get(st, 1), max(count - cost, 0) })\n" \
    "    end\n" \
    "  end\n" \
    "}\n" \
    "FAM[6] = FAM[3]\n" \
    "end\n"

/* ---- sliding_window (2): window.c ----
 * { window start, cur, prev }, expiring two windows after the start (the
 * current window's units weigh on the next one).  The C compares
 * prev * (W - e) + (cur + cost) * W with limit * W; here the same test is
 * ceil(prev * (W - e) / W) <= limit - cur - cost, which needs no product
 * beyond limit * W. */
#define RL2_LUA_SLIDING \
    "LOAD.w = function()\n" \
    "local function sw_view(p, st, now)\n" \
    "  local w = p.window\n" \
    "  local stored = clamp(get(st, 1), 0, NOW_MAX)\n" \
    "  local v = { start = idiv(now, w) * w,\n" \
    "              cur = clamp(get(st, 2), 0, p.limit),\n" \
    "              prev = clamp(get(st, 3), 0, p.limit) }\n" \
    "  if v.start <= stored then\n" \
    "    v.start = stored\n" \
    "  elseif v.start - w == stored then\n" \
    "    v.prev, v.cur = v.cur, 0\n" \
    "  else\n" \
    "    v.prev, v.cur = 0, 0\n" \
    "  end\n" \
    "  v.elapsed = clamp(now - v.start, 0, w)\n" \
    "  return v\n" \
    "end\n" \
    "local function sw_reset(w, v, now)\n" \
    "  if v.cur > 0 then return v.start + 2 * w - now end\n" \
    "  if v.prev > 0 then return v.start + w - now end\n" \
    "  return 0\n" \
    "end\n" \
    "local function sw_retry(p, v, now, cost)\n" \
    "  local w = p.window\n" \
    "  local room = p.limit - v.cur - cost\n" \
    "  if v.prev > 0 and room >= 0 then\n" \
    "    local t = w - muldiv(room, w, v.prev)\n" \
    "    if t < w then return v.start + t - now end\n" \
    "  end\n" \
    "  local t = w\n" \
    "  if v.cur > 0 and p.limit - cost < v.cur then\n" \
    "    t = t + w - muldiv(p.limit - cost, w, v.cur)\n" \
    "  end\n" \
    "  return v.start + t - now\n" \
    "end\n" \
    "FAM[2] = {\n" \
    "  check = function(p, st, now, cost)\n" \
    "    local w = p.window\n" \
    "    local v = sw_view(p, st, now)\n" \
    "    local q, r = muldiv(v.prev, w - v.elapsed, w)\n" \
    "    if r > 0 then q = q + 1 end\n" \
    "    local room = p.limit - v.cur - cost\n" \
    "    if q <= room then\n" \
    "      v.cur = v.cur + cost\n" \
    "      return result(true, p.limit, room - q, sw_reset(w, v, now), 0)\n" \
    "    end\n" \
    "    return result(false, p.limit, p.limit - v.cur - q,\n" \
    "                  sw_reset(w, v, now), sw_retry(p, v, now, cost))\n" \
    "  end,\n" \
    "  commit = function(p, st, now, cost)\n" \
    "    local v = sw_view(p, st, now)\n" \
    "    put(st, { v.start, v.cur + cost, v.prev }, v.start + 2 * p.window)\n" \
    "  end,\n" \
    "  refund = function(p, st, now, committed, cost)\n" \
    "    local w = p.window\n" \
    "    local stored = clamp(get(st, 1), 0, NOW_MAX)\n" \
    "    local s = idiv(committed, w) * w\n" \
    "    local cur, prev = get(st, 2), get(st, 3)\n" \
    "    if s == stored then\n" \
    "      cur = max(clamp(cur, 0, p.limit) - cost, 0)\n" \
    "    elseif s == stored - w and now >= stored then\n" \
    "      prev = max(clamp(prev, 0, p.limit) - cost, 0)\n" \
    "    else\n" \
    "      return\n" \
    "    end\n" \
    "    put_keep(st, { get(st, 1), cur, prev })\n" \
    "  end\n" \
    "}\n" \
    "end\n"

/* ---- sliding_log (1): window.c ----
 * A sorted set scored by admission time, expiring a window after its
 * newest entry.  Members must be unique or ZADD overwrites: the k-th
 * entry stamped t is "t-k", k counting the entries already stamped t.
 * Expiry removes all of one stamp at once and a refund removes the highest
 * k first, so the stamps of t stay "t-0" .. "t-(n-1)" and the next is
 * free. */
#define RL2_LUA_LOG \
    "LOAD.l = function()\n" \
    "local function sl_cap(p) return clamp(p.limit, 1, 4096) end\n" \
    "local function sl_at(key, i)\n" \
    "  local r = redis.call('ZRANGE', key, i, i, 'WITHSCORES')\n" \
    "  return clamp(tonumber(r[2]) or 0, 0, NOW_MAX)\n" \
    "end\n" \
    "FAM[1] = {\n" \
    "  load = function(key) return { key = key, exists = true } end,\n" \
    "  save = function() end,\n" \
    "  check = function(p, st, now, cost)\n" \
    "    local w, cap = p.window, sl_cap(p)\n" \
    "    local count = redis.call('ZCARD', st.key)\n" \
    "    local gone = redis.call('ZCOUNT', st.key, '-inf', num(now - w))\n" \
    "    local live = count - gone\n" \
    "    local newest = now\n" \
    "    if live > 0 then newest = sl_at(st.key, count - 1) end\n" \
    "    if live + cost <= cap then\n" \
    "      local reset = 0\n" \
    "      if cost > 0 then newest = max(newest, now) end\n" \
    "      if live + cost > 0 then reset = newest + w - now end\n" \
    "      return result(true, cap, cap - live - cost, reset, 0)\n" \
    "    end\n" \
    "    local need = live + cost - cap\n" \
    "    return result(false, cap, cap - live, newest + w - now,\n" \
    "                  sl_at(st.key, gone + need - 1) + w - now)\n" \
    "  end,\n" \
    "  commit = function(p, st, now, cost)\n" \
    "    local key, t = st.key, now\n" \
    "    local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')\n" \
    "    if last[2] then\n" \
    "      t = max(now, clamp(tonumber(last[2]), 0, NOW_MAX))\n" \
    "    end\n" \
    "    redis.call('ZREMRANGEBYSCORE', key, '-inf', num(now - p.window))\n" \
    "    local k = redis.call('ZCOUNT', key, num(t), num(t))\n" \
    "    local i = 0\n" \
    "    while i < cost do\n" \
    "      local args = {}\n" \
    "      while i < cost and #args < 256 do\n" \
    "        args[#args + 1] = num(t)\n" \
    "        args[#args + 1] = num(t) .. '-' .. num(k + i)\n" \
    "        i = i + 1\n" \
    "      end\n" \
    "      redis.call('ZADD', key, unpack(args))\n" \
    "    end\n" \
    "    local ms = idiv(t + p.window + 999, 1000)\n" \
    "    redis.call('PEXPIREAT', key, num(ms))\n" \
    "  end,\n" \
    "  refund = function(p, st, now, committed, cost)\n" \
    "    local t = num(committed)\n" \
    "    local c = redis.call('ZCOUNT', st.key, t, t)\n" \
    "    for i = c - min(cost, c), c - 1 do\n" \
    "      redis.call('ZREM', st.key, t .. '-' .. num(i))\n" \
    "    end\n" \
    "  end\n" \
    "}\n" \
    "end\n"

/* ---- concurrency (5): window.c, algo.c ----
 * { in flight }, kept an hour after the last admission (a count leaked by
 * a killed process does not lock a client out for longer); deleted when
 * it drops to zero. */
#define RL2_LUA_CONCURRENCY \
    "LOAD.c = function()\n" \
    "local function cc_count(st)\n" \
    "  return clamp(get(st, 1), 0, COUNT_MAX)\n" \
    "end\n" \
    "FAM[5] = {\n" \
    "  check = function(p, st, now, cost)\n" \
    "    return counter(p.limit, cc_count(st), cost, 0, 1000000)\n" \
    "  end,\n" \
    "  commit = function(p, st, now, cost)\n" \
    "    put(st, { min(cc_count(st) + cost, COUNT_MAX) }, now + 3600000000)\n" \
    "  end,\n" \
    "  refund = function(p, st, now, committed, cost)\n" \
    "    local c = max(cc_count(st) - cost, 0)\n" \
    "    if c == 0 then\n" \
    "      st.del, st.dirty = true, true\n" \
    "    else\n" \
    "      put_keep(st, { c })\n" \
    "    end\n" \
    "  end\n" \
    "}\n" \
    "end\n"

/* ---- driver: algo.c's dispatch (through the family loaders), the
 * arguments, the clock ----
 * A request larger than the capacity never fits (algo.c); states are
 * cached by key so that two layers on one key see each other's commits,
 * as they do in the local store's zone.  A layer's text is parsed once
 * (describe) into an immutable description, shared by later calls when
 * it has no committed time (apply, peek; at most 256 kept, then
 * forgotten at once); each call makes one table per layer from it, with
 * every field it will get.  TIME's two strings are numbers to Lua's
 * arithmetic as they are: two calls of tonumber fewer.  The reply is one
 * string.format per layer, not one per number, and for one layer (most
 * requests) one in all: a table that grows as a loop fills it is
 * reallocated at 1, 2, 4, 8 ... entries, which cost a call of one layer
 * ten thousand instructions. */
#define RL2_LUA_DRIVER \
    "local FAMILY = { [0] = 'b', [1] = 'l', [2] = 'w', [3] = 's',\n" \
    "                 [4] = 'b', [5] = 'c', [6] = 's' }\n" \
    "local function fam(algo)\n" \
    "  if not FAM[algo] then LOAD[FAMILY[algo]]() end\n" \
    "  return FAM[algo]\n" \
    "end\n" \
    "local function capacity(p)\n" \
    "  if (p.algo == 0 or p.algo == 4) and p.burst > 0 then\n" \
    "    return p.burst\n" \
    "  end\n" \
    "  if p.algo == 1 then return clamp(p.limit, 1, 4096) end\n" \
    "  return p.limit\n" \
    "end\n" \
    "local function check(p, st, now, cost)\n" \
    "  local f = fam(p.algo)\n" \
    "  cost = max(cost, 0)\n" \
    "  if cost <= capacity(p) then return f.check(p, st, now, cost) end\n" \
    "  local r = f.check(p, st, now, 0)\n" \
    "  r[1], r[5] = 0, max(r[4], 1000000)\n" \
    "  return r\n" \
    "end\n" \
    "local function params(algo, limit, window, burst, period)\n" \
    "  if not (algo and limit and window and burst and period)\n" \
    "     or not FAMILY[algo] or limit < 1\n" \
    "     or (window < 1 and algo ~= 5 and algo ~= 6) then\n" \
    "    return nil\n" \
    "  end\n" \
    "  return { algo = algo, limit = limit, window = window,\n" \
    "           burst = burst, period = period,\n" \
    "           bt = false, bcap = false, bcap_us = false }\n" \
    "end\n" \
    "local LAYER = '^(%-?%d+) (%-?%d+) (%-?%d+) (%-?%d+) (%-?%d+) (%-?%d+) '\n" \
    "  .. '(%-?%d+) (%-?%d+) (%-?%d+) (%-?%d+) (%-?%d+)$'\n" \
    "local DESC, NDESC = {}, 0\n" \
    "local function describe(s)\n" \
    "  local d = DESC[s]\n" \
    "  if d then return d end\n" \
    "  local a = { string.match(s, LAYER) }\n" \
    "  if not a[11] then return nil end\n" \
    "  for j = 1, 11 do a[j] = tonumber(a[j]) end\n" \
    "  d = { flags = a[1], cost = a[7], committed = a[11],\n" \
    "        p = params(a[2], a[3], a[4], a[5], a[6]) }\n" \
    "  if a[8] > 0 then d.op = params(0, a[8], a[9], a[10], 0) end\n" \
    "  if a[1] < 0 or not d.p or (a[8] > 0 and not d.op) then return nil end\n" \
    "  if a[11] == 0 then\n" \
    "    if NDESC >= 256 then DESC, NDESC = {}, 0 end\n" \
    "    DESC[s], NDESC = d, NDESC + 1\n" \
    "  end\n" \
    "  return d\n" \
    "end\n" \
    "local function layers()\n" \
    "  local out, k = {}, 1\n" \
    "  for i = 2, #ARGV do\n" \
    "    local d = describe(ARGV[i])\n" \
    "    if not d or not KEYS[k] then return nil end\n" \
    "    local l = { flags = d.flags, cost = d.cost, committed = d.committed,\n" \
    "                p = d.p, op = d.op, key = KEYS[k], okey = nil,\n" \
    "                res = false, refused = false, ov = false, done = false }\n" \
    "    k = k + 1\n" \
    "    if d.op then\n" \
    "      if not KEYS[k] then return nil end\n" \
    "      l.okey, k = KEYS[k], k + 1\n" \
    "    end\n" \
    "    out[i - 1] = l\n" \
    "  end\n" \
    "  if k - 1 ~= #KEYS then return nil end\n" \
    "  return out\n" \
    "end\n" \
    "local function clock()\n" \
    "  local now = tonumber(ARGV[1])\n" \
    "  if not now then\n" \
    "    local t = redis.call('TIME')\n" \
    "    now = t[1] * 1000000 + t[2]\n" \
    "  end\n" \
    "  return clamp(now, 0, NOW_MAX)\n" \
    "end\n" \
    "local STATES\n" \
    "local function state(p, key)\n" \
    "  local st = STATES[key]\n" \
    "  if not st then\n" \
    "    st = (fam(p.algo).load or load)(key)\n" \
    "    st.save = fam(p.algo).save or save\n" \
    "    STATES[key] = st\n" \
    "  end\n" \
    "  return st\n" \
    "end\n" \
    "local function save_all()\n" \
    "  for _, st in pairs(STATES) do st.save(st) end\n" \
    "end\n" \
    "local function check_all(L, now)\n" \
    "  local blocked = false\n" \
    "  for _, l in ipairs(L) do\n" \
    "    l.res = check(l.p, state(l.p, l.key), now, l.cost)\n" \
    "    l.refused, l.ov, l.done = l.res[1] == 0, false, false\n" \
    "    if l.refused and l.op\n" \
    "       and check(l.op, state(l.op, l.okey), now, l.cost)[1] == 1 then\n" \
    "      l.refused, l.ov = false, true\n" \
    "    end\n" \
    "    if l.refused and l.flags % 2 == 0 then blocked = true end\n" \
    "  end\n" \
    "  return blocked\n" \
    "end\n" \
    "local LFMT = ' %d %d %d %d %d %d %d %d'\n" \
    "local RFMT1 = '%d' .. LFMT\n" \
    "local function reply_layer(l)\n" \
    "  local r = l.res\n" \
    "  return r[1], r[2], r[3], r[4], r[5], l.refused and 1 or 0,\n" \
    "         l.ov and 1 or 0, l.done and 1 or 0\n" \
    "end\n" \
    "local function reply(L, now)\n" \
    "  if #L == 1 then return fmt(RFMT1, now, reply_layer(L[1])) end\n" \
    "  local s = num(now)\n" \
    "  for _, l in ipairs(L) do s = s .. fmt(LFMT, reply_layer(l)) end\n" \
    "  return s\n" \
    "end\n"

/* ---- the token bucket's short path ----
 * The common call (one layer, a token bucket, no overflow allowance, a
 * state of one number) decided without the driver's tables: the same
 * arithmetic as FAM[0] through check(), check_all(), the commit, save()
 * and reply(), in one function that makes no table.  It costs Redis
 * about 4 µs less a call (9.9 -> 5.7 µs by INFO commandstats, FCALL on
 * one key, redis-server 7.0).  Anything else (more layers, another
 * algorithm, an overflow, a state that is not one number, malformed
 * arguments) returns nil before writing anything, and the driver
 * decides; a state read here is read again there, which changes nothing.
 * So does a bucket the C never sends (an interval under 1 us, or more
 * than EXACT us, RL2_ALGO_EXACT): tonumber makes a number of 309 digits
 * infinite, the bucket's arithmetic then gives NaN, and the two paths,
 * which test their conditions the other way round, parted on it (this
 * one admitted, and deleted the state, where the driver refused).
 * test_redis_lua compares both paths with the C on random histories, and
 * with each other on such arguments.  tb_read() and save_tat() read
 * and write a state of one number for this path and the lease's (below),
 * as load() and save() do for the driver; tb_read() also leaves such a
 * bucket to the driver, for both. */
#define RL2_LUA_TB_SHORT \
    "local function tb_read(p, key)\n" \
    "  local t, cap, cap_us = bucket(p)\n" \
    "  if not (t >= 1 and cap_us <= EXACT) then return nil end\n" \
    "  local raw, tat = redis.call('GET', key), 0\n" \
    "  if raw then\n" \
    "    tat = tonumber(raw)\n" \
    "    if not tat then return nil end\n" \
    "  end\n" \
    "  return t, cap, cap_us, clamp(tat, 0, NOW_MAX + cap_us),\n" \
    "         raw and true or false\n" \
    "end\n" \
    "local function save_tat(key, tat)\n" \
    "  local ms = idiv(tat + 999, 1000)\n" \
    "  if ms < 1 then\n" \
    "    redis.call('DEL', key)\n" \
    "  else\n" \
    "    redis.call('SET', key, num(tat), 'PXAT', num(ms))\n" \
    "  end\n" \
    "end\n" \
    "local function tb_short()\n" \
    "  if #ARGV ~= 2 or #KEYS ~= 1 then return nil end\n" \
    "  local d = describe(ARGV[2])\n" \
    "  if not d or d.op or d.p.algo ~= 0 then return nil end\n" \
    "  local key = KEYS[1]\n" \
    "  local t, cap, cap_us, tat = tb_read(d.p, key)\n" \
    "  if not t then return nil end\n" \
    "  local now = clock()\n" \
    "  local cost = max(d.cost, 0)\n" \
    "  local asked = cost\n" \
    "  if cost > cap then asked = 0 end\n" \
    "  local debt = max(tat - now, 0)\n" \
    "  local after = debt + asked * t\n" \
    "  local ok, left, reset, retry = 1, idiv(cap_us - after, t), after, 0\n" \
    "  if after > cap_us then\n" \
    "    ok, left, reset = 0, idiv(max(cap_us - debt, 0), t), debt\n" \
    "    retry = max(after - cap_us, 1)\n" \
    "  end\n" \
    "  if asked ~= cost then ok, retry = 0, max(reset, 1000000) end\n" \
    "  if ok == 1 then save_tat(key, max(tat, now) + cost * t) end\n" \
    "  return fmt(RFMT1, now, ok, cap, max(left, 0), max(reset, 0), retry,\n" \
    "             1 - ok, 0, ok)\n" \
    "end\n"

/* ---- the slice of a lease: grant.c ----
 * Take back the unused units of the last slice (a refund of what was
 * committed at its grant), then grant min(want, free, max(cost,
 * ceil(free / 4))) units, committed now; fewer than cost free is no
 * grant, and the refusal of a request of cost; want 0 only gives back.
 * The horizon: the span's
 * end (fixed window, quota), the window's end (sliding window), -1 for
 * none (buckets).  A lease is never taken of a sliding log or a
 * concurrency limit (lease_layers() refuses them). */
#define RL2_LUA_GRANT \
    "local function grant(p, st, now, cost, want, back, back_at)\n" \
    "  local f = fam(p.algo)\n" \
    "  cost = max(cost, 1)\n" \
    "  if back > 0 and st.exists then\n" \
    "    f.refund(p, st, now, clamp(back_at, 0, NOW_MAX),\n" \
    "             clamp(back, 0, capacity(p)))\n" \
    "  end\n" \
    "  if want == 0 then return 0, check(p, st, now, 0), 0 end\n" \
    "  want = max(want, cost)\n" \
    "  local free = check(p, st, now, 0)[3]\n" \
    "  local g = min(min(want, free), max(cost, idiv(free + 3, 4)))\n" \
    "  if g < cost then return 0, check(p, st, now, cost), 0 end\n" \
    "  f.commit(p, st, now, g)\n" \
    "  local r = check(p, st, now, 0)\n" \
    "  local h = -1\n" \
    "  if p.algo == 3 or p.algo == 6 then\n" \
    "    h = r[4]\n" \
    "  elseif p.algo == 2 then\n" \
    "    h = (idiv(now, p.window) + 1) * p.window - now\n" \
    "  end\n" \
    "  return g, r, h\n" \
    "end\n" \
    "local LEASE = '^(%-?%d+) (%-?%d+) (%-?%d+) (%-?%d+) (%-?%d+) '\n" \
    "  .. '(%-?%d+) (%-?%d+) (%-?%d+) (%-?%d+)$'\n" \
    "local function lease_layers()\n" \
    "  if #ARGV - 1 ~= #KEYS then return nil end\n" \
    "  local out = {}\n" \
    "  for i = 2, #ARGV do\n" \
    "    local a = { string.match(ARGV[i], LEASE) }\n" \
    "    if not a[9] then return nil end\n" \
    "    for j = 1, 9 do a[j] = tonumber(a[j]) end\n" \
    "    local l = { p = params(a[1], a[2], a[3], a[4], a[5]), cost = a[6],\n" \
    "                want = a[7], back = a[8], back_at = a[9],\n" \
    "                key = KEYS[i - 1] }\n" \
    "    if not l.p or l.p.algo == 1 or l.p.algo == 5 then return nil end\n" \
    "    out[i - 1] = l\n" \
    "  end\n" \
    "  return out\n" \
    "end\n"

/* ---- the token bucket's lease, short ----
 * The common lease call (one layer, a token bucket, a state of one
 * number) decided without the driver's tables: the same arithmetic as
 * grant() through FAM[0]'s refund, check and commit, save() and the
 * lease's reply.  A busy key's every slice, and with many clients every
 * request, is such a call.  Anything else returns nil before writing
 * anything, and the driver decides; so does a bucket the C never sends,
 * as in the apply's short path (here the NaN made a grant of -2^63 where
 * the driver refused).  test_redis_lua compares it with the C on random
 * histories, and with the driver on such arguments. */
#define RL2_LUA_LEASE_SHORT \
    "local function lease_short()\n" \
    "  if #ARGV ~= 2 or #KEYS ~= 1 then return nil end\n" \
    "  local algo, limit, window, burst, period, cost, want, back, back_at =\n" \
    "    string.match(ARGV[2], LEASE)\n" \
    "  if not back_at or tonumber(algo) ~= 0 then return nil end\n" \
    "  local p = params(0, tonumber(limit), tonumber(window),\n" \
    "                   tonumber(burst), tonumber(period))\n" \
    "  if not p then return nil end\n" \
    "  local key = KEYS[1]\n" \
    "  local t, cap, cap_us, tat, exists = tb_read(p, key)\n" \
    "  if not t then return nil end\n" \
    "  cost, want = max(tonumber(cost), 1), tonumber(want)\n" \
    "  back, back_at = tonumber(back), tonumber(back_at)\n" \
    "  local now = clock()\n" \
    "  local dirty = false\n" \
    "  if back > 0 and exists and tat > now then\n" \
    "    back_at = clamp(back_at, 0, NOW_MAX)\n" \
    "    local forgive = clamp(back, 0, cap) * t - max(now - back_at, 0)\n" \
    "    tat, dirty = max(tat - max(forgive, 0), now), true\n" \
    "  end\n" \
    "  local free = idiv(max(cap_us - max(tat - now, 0), 0), t)\n" \
    "  local g, h = min(min(max(want, cost), free),\n" \
    "                   max(cost, idiv(free + 3, 4))), -1\n" \
    "  if want == 0 or g < cost then g, h = 0, 0 end\n" \
    "  if g > 0 then tat, dirty = max(tat, now) + g * t, true end\n" \
    "  local debt, c, retry = max(tat - now, 0), 0, 0\n" \
    "  if g == 0 and want ~= 0 then c = cost end\n" \
    "  if debt + c * t > cap_us then retry = max(debt + c * t - cap_us, 1) end\n" \
    "  if c > cap then retry = max(debt, 1000000) end\n" \
    "  if dirty then save_tat(key, tat) end\n" \
    "  return fmt('%d %d %d %d %d %d %d', now, g, cap,\n" \
    "             idiv(max(cap_us - debt, 0), t), debt, retry, h)\n" \
    "end\n"

#define RL2_LUA_DEFINITIONS \
    RL2_LUA_PRELUDE RL2_LUA_BUCKETS RL2_LUA_SPANS RL2_LUA_SLIDING \
    RL2_LUA_LOG RL2_LUA_CONCURRENCY RL2_LUA_DRIVER \
    RL2_LUA_TB_SHORT RL2_LUA_GRANT RL2_LUA_LEASE_SHORT

/* ---- per call: what every entry runs first ----
 * math and string are bound here, not with the definitions: a library's
 * top level runs at FUNCTION LOAD, where Redis 7.0 lets it read no global
 * but redis.  STATES is per request. */
#define RL2_LUA_BIND "floor, fmt = math.floor, string.format\n"
#define RL2_LUA_BEGIN RL2_LUA_BIND RL2_LUA_LAYERS
#define RL2_LUA_LAYERS \
    "STATES = {}\n" \
    "local L = layers()\n" \
    "if not L then\n" \
    "  return redis.error_reply('ERR rl2: malformed script arguments')\n" \
    "end\n" \
    "local now = clock()\n"

/* ---- the bodies of the three entries, shared by both forms ---- */

/* An apply tries the token bucket's short path first. */
#define RL2_LUA_APPLY_BEGIN \
    RL2_LUA_BIND \
    "local short = tb_short()\n" \
    "if short then return short end\n" \
    RL2_LUA_LAYERS

/* Check every layer; commit only when no enforcing layer is refused, each
 * layer that fits into its main state or, when only the overflow
 * allowance admitted it, into the overflow state. */
#define RL2_LUA_APPLY \
    "if not check_all(L, now) then\n" \
    "  for _, l in ipairs(L) do\n" \
    "    if not l.refused then\n" \
    "      local p, key = l.p, l.key\n" \
    "      if l.ov then p, key = l.op, l.okey end\n" \
    "      local cost = clamp(l.cost, 0, capacity(p))\n" \
    "      fam(p.algo).commit(p, state(p, key), now, cost)\n" \
    "      l.done = true\n" \
    "    end\n" \
    "  end\n" \
    "  save_all()\n" \
    "end\n" \
    "return reply(L, now)\n"

/* Reads only (GET, ZCARD, ZCOUNT, ZRANGE, TIME): no key is created or
 * touched, so the function may say no-writes. */
#define RL2_LUA_PEEK \
    "check_all(L, now)\n" \
    "return reply(L, now)\n"

/* A key that is gone holds a state equal to none: nothing to give back. */
#define RL2_LUA_REFUND \
    "for _, l in ipairs(L) do\n" \
    "  local p, key = l.p, l.key\n" \
    "  if floor(l.flags / 2) % 2 == 1 then p, key = l.op, l.okey end\n" \
    "  if p then\n" \
    "    local st = state(p, key)\n" \
    "    if st.exists then\n" \
    "      fam(p.algo).refund(p, st, now, clamp(l.committed, 0, NOW_MAX),\n" \
    "                         clamp(l.cost, 0, capacity(p)))\n" \
    "    end\n" \
    "  end\n" \
    "end\n" \
    "save_all()\n" \
    "return #L\n"

/* A grant per layer (its own arguments: redis_scripts.h), all saved
 * together; the answer is now, then per layer granted, limit, remaining,
 * reset_us, retry_after_us, horizon_us. */
#define RL2_LUA_LEASE \
    RL2_LUA_BIND \
    "local short = lease_short()\n" \
    "if short then return short end\n" \
    "STATES = {}\n" \
    "local L = lease_layers()\n" \
    "if not L then\n" \
    "  return redis.error_reply('ERR rl2: malformed lease arguments')\n" \
    "end\n" \
    "local now = clock()\n" \
    "local out = { num(now) }\n" \
    "for _, l in ipairs(L) do\n" \
    "  local g, r, h = grant(l.p, state(l.p, l.key), now, l.cost, l.want,\n" \
    "                        l.back, l.back_at)\n" \
    "  out[#out + 1] = num(g)\n" \
    "  for j = 2, 5 do out[#out + 1] = num(r[j]) end\n" \
    "  out[#out + 1] = num(h)\n" \
    "end\n" \
    "save_all()\n" \
    "return table.concat(out, ' ')\n"

/* ---- scripts (EVALSHA, EVAL): the whole chunk runs on every call ---- */

static const char rl2_lua_apply[] =
    RL2_LUA_DEFINITIONS RL2_LUA_APPLY_BEGIN RL2_LUA_APPLY;
static const char rl2_lua_peek[] =
    RL2_LUA_DEFINITIONS RL2_LUA_BEGIN RL2_LUA_PEEK;
static const char rl2_lua_refund[] =
    RL2_LUA_DEFINITIONS RL2_LUA_BEGIN RL2_LUA_REFUND;
static const char rl2_lua_lease[] = RL2_LUA_DEFINITIONS RL2_LUA_LEASE;

const char rl2_lua_prelude[] = RL2_LUA_PRELUDE RL2_LUA_BIND;

const char *const rl2_lua_source[RL2_SCRIPT_COUNT] = {
    [RL2_SCRIPT_APPLY] = rl2_lua_apply,
    [RL2_SCRIPT_PEEK] = rl2_lua_peek,
    [RL2_SCRIPT_REFUND] = rl2_lua_refund,
    [RL2_SCRIPT_LEASE] = rl2_lua_lease,
};

/* ---- the function library (FUNCTION LOAD, FCALL) ----
 * The definitions run once, at load; each function takes KEYS and ARGV
 * from its parameters into the upvalues the driver reads (a function has
 * no KEYS or ARGV globals).  NAME is prepended at run time (the library's
 * own hash cannot be inside the text it hashes). */
#define RL2_LUA_FUNCTION_OF(name, flags, body) \
    "redis.register_function{\n" \
    "  function_name = NAME .. '_" name "', flags = {" flags "},\n" \
    "  callback = function(keys, args)\n" \
    "KEYS, ARGV = keys, args\n" \
    body \
    "end }\n"
#define RL2_LUA_FUNCTION(name, flags, body) \
    RL2_LUA_FUNCTION_OF(name, flags, RL2_LUA_BEGIN body)

static const char rl2_lua_library_body[] =
    "local KEYS, ARGV\n"
    RL2_LUA_DEFINITIONS
    RL2_LUA_FUNCTION_OF("apply", "", RL2_LUA_APPLY_BEGIN RL2_LUA_APPLY)
    RL2_LUA_FUNCTION("peek", "'no-writes'", RL2_LUA_PEEK)
    RL2_LUA_FUNCTION("refund", "", RL2_LUA_REFUND)
    RL2_LUA_FUNCTION_OF("lease", "", RL2_LUA_LEASE);

/* clang-format on */

/* "#!lua name=rl2_<16 hex>\nlocal NAME = 'rl2_<16 hex>'\n" */
#define RL2_LUA_HEAD_MAX 80

static pthread_once_t rl2_library_once = PTHREAD_ONCE_INIT;
static char   rl2_library_text[RL2_LUA_HEAD_MAX + sizeof(rl2_lua_library_body)];
static size_t rl2_library_len;
static char   rl2_function_names[RL2_SCRIPT_COUNT][RL2_LUA_FUNCTION_MAX];

/* Named after the hash of its text: two versions of the module sharing one
 * Redis (an upgrade in progress) each load and call their own library,
 * and never replace the other's. */
static void
rl2_library_build(void)
{
    char hex[65], name[24];
    int  n;

    rl2_sha256_hex(rl2_lua_library_body, sizeof(rl2_lua_library_body) - 1, hex);
    snprintf(name, sizeof(name), "rl2_%.16s", hex);
    n = snprintf(rl2_library_text, RL2_LUA_HEAD_MAX,
                 "#!lua name=%s\nlocal NAME = '%s'\n", name, name);
    memcpy(rl2_library_text + n, rl2_lua_library_body,
           sizeof(rl2_lua_library_body));
    rl2_library_len = (size_t)n + sizeof(rl2_lua_library_body) - 1;
    for (int i = 0; i < RL2_SCRIPT_COUNT; i++) {
        snprintf(rl2_function_names[i], RL2_LUA_FUNCTION_MAX, "%s_%s", name,
                 rl2_script_name((rl2_script_t)i));
    }
}

const char *
rl2_lua_library(size_t *len)
{
    pthread_once(&rl2_library_once, rl2_library_build);
    *len = rl2_library_len;
    return rl2_library_text;
}

const char *
rl2_lua_function(rl2_script_t which)
{
    pthread_once(&rl2_library_once, rl2_library_build);
    return rl2_function_names[which];
}
