"""The Redis backend's Lua scripts: each touches the keys of one scope (or of one trigger), so one Cluster slot.

Run with EVALSHA; a NOSCRIPT reply makes the connection load them all (``SCRIPTS``) and re-send. The key
layout the scripts work on is described in :mod:`.layout`.
"""

from __future__ import annotations

import hashlib
from typing import Final

__all__ = ["SCRIPTS", "Script"]

# Server time in epoch ms, shared by the scripts (TIME is allowed in scripts: effects are replicated).
NOW: Final = "local __t = redis.call('TIME')\nlocal now = __t[1] * 1000 + math.floor(__t[2] / 1000)\n"


class Script:
    """A Lua script run with EVALSHA; loaded once per server (NOSCRIPT triggers a reload)."""

    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


def recorder(keys: int, args: int, *, cluster: bool = False) -> str:
    """The Lua prelude that records changes (SPEC §10), in a script with ``keys`` KEYS and ``args`` ARGV of its own.

    After them come KEYS counter, scope stream, global stream, stream registry (only when recording: a script
    called with ``changes: off`` gets no extra keys) and ARGV ``'1'`` to record (``''`` not to), the scope, the
    scope's tag. ``record(event, key, old, new)`` takes a revision from the counter and appends the change to
    both streams under it; it runs before the script's writes, so an error in it leaves the entries untouched.
    Values are the JSON texts as stored: nothing is re-encoded, numbers stay exact.

    A traced write (the calling operation's traceparent known) passes ``'t'`` instead of ``'1'`` and the
    traceparent as one more ARGV after those three; every change then carries it as field ``p``. An untraced
    write's arguments are exactly as before. The script's own trailing ARGV (``set_many``'s pairs,
    ``delete_many``'s keys) start at ``rec_tail``, after whichever the recorder took. The field ``t`` stays the
    last one of every change (compaction reads it there).

    ``cluster``: the Redis Cluster variant, whose script may touch the scope's slot only. Its only extra KEY is
    the scope stream (the ARGV are the same; scope and tag go unused); the revision is the stream entry's ID, which
    Redis makes greater than every earlier one of the stream (``*``: server time in ms, then a sequence): the
    first change of a script takes it, the next ones count up from it, so revision = ms * 1,000,000 + sequence
    (see ``RECORDING_CLUSTER``) stays below the next millisecond's first.
    """
    k, a = keys, args
    if cluster:
        return f"""
local rec = ARGV[{a + 1}] ~= ''
local rec_p = ARGV[{a + 1}] == 't' and ARGV[{a + 4}] or nil
local rec_tail = rec_p and {a + 5} or {a + 4}
local rec_now
local rec_ms
local rec_seq
local function record(ev, key, old, new)
  if not rec_now then
    local t = redis.call('TIME')
    rec_now = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000))
  end
  local f = {{'e', ev, 'k', key}}
  if old then f[#f + 1] = 'o'; f[#f + 1] = old end
  if new then f[#f + 1] = 'n'; f[#f + 1] = new end
  if rec_p then f[#f + 1] = 'p'; f[#f + 1] = rec_p end
  f[#f + 1] = 't'; f[#f + 1] = rec_now
  if not rec_ms then
    local id = redis.call('XADD', KEYS[{k + 1}], '*', unpack(f))
    -- A stream compaction emptied is left to expire (see CLUSTER_TRIM_SCOPE): written again, it stays.
    redis.call('PERSIST', KEYS[{k + 1}])
    local ms, seq = string.match(id, '^(%d+)-(%d+)$')
    rec_ms = tonumber(ms)
    rec_seq = tonumber(seq)
  else
    rec_seq = rec_seq + 1
    if rec_seq > 999998 then
      rec_ms = rec_ms + 1
      rec_seq = 0
    end
    redis.call('XADD', KEYS[{k + 1}], string.format('%d-%d', rec_ms, rec_seq), unpack(f))
  end
end
"""
    return f"""
local rec = ARGV[{a + 1}] ~= ''
local rec_p = ARGV[{a + 1}] == 't' and ARGV[{a + 4}] or nil
local rec_tail = rec_p and {a + 5} or {a + 4}
local rec_now
local rec_first
local function record(ev, key, old, new)
  local rev = redis.call('INCR', KEYS[{k + 1}])
  if not rec_now then
    local t = redis.call('TIME')
    rec_now = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000))
  end
  local id = string.format('%d', rev) .. '-0'
  local f = {{'e', ev, 'k', key}}
  if old then f[#f + 1] = 'o'; f[#f + 1] = old end
  if new then f[#f + 1] = 'n'; f[#f + 1] = new end
  if rec_p then f[#f + 1] = 'p'; f[#f + 1] = rec_p end
  f[#f + 1] = 't'; f[#f + 1] = rec_now
  redis.call('XADD', KEYS[{k + 2}], id, unpack(f))
  redis.call('XADD', KEYS[{k + 3}], id, 's', ARGV[{a + 2}], unpack(f))
  if not rec_first then
    -- NX: the score is the stream's first retained revision; compaction moves it.
    rec_first = rev
    redis.call('ZADD', KEYS[{k + 4}], 'NX', string.format('%d', rev), ARGV[{a + 3}])
  end
end
"""


#: The Cluster recorder's revision from a stream entry ID ``<ms>-<seq>``: ``ms * RECORDING_CLUSTER + seq``.
RECORDING_CLUSTER: Final = 1_000_000


def _writing(keys: int, args: int, body: str) -> tuple[Script, Script]:
    """A writing script recording its changes, for one server and for a Cluster (``recorder``)."""
    single, cluster = Script(recorder(keys, args) + body), Script(recorder(keys, args, cluster=True) + body)
    CLUSTER_OF[single] = cluster
    return single, cluster


#: The Cluster variant of each writing script.
CLUSTER_OF: Final[dict[Script, Script]] = {}


# KEYS[1] entry, KEYS[2] index; ARGV[1] JSON, ARGV[2] key, ARGV[3] ttl ms ('' = none); recording (see
# ``recorder``). Returns the old text. Recording, what can fail (a key of another type) runs first: the GET,
# the index; the change is recorded before the entry is written. Not recording: the commands of before.
SET, CLUSTER_SET = _writing(
    2,
    3,
    """
local old
if rec then old = redis.call('GET', KEYS[1]) end
local score = 'inf'
if ARGV[3] ~= '' then
  local t = redis.call('TIME')
  score = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[3]))
end
redis.call('ZADD', KEYS[2], score, ARGV[2])
if rec then
  record(old and 'updated' or 'created', ARGV[2], old, ARGV[1])
  if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[1]) else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3]) end
elseif ARGV[3] == '' then
  old = redis.call('SET', KEYS[1], ARGV[1], 'GET')
else
  old = redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3], 'GET')
end
return old
""",
)

# KEYS[1] entry, KEYS[2] index; ARGV[1] key; recording. Returns the old text. An index member without its
# entry is one Redis expired: recorded as ``expired`` (cleanup would have, had it come first).
DELETE, CLUSTER_DELETE = _writing(
    2,
    1,
    """
if rec then
  local cur = redis.call('GET', KEYS[1])
  if cur then
    record('deleted', ARGV[1], cur, nil)
  elseif redis.call('ZSCORE', KEYS[2], ARGV[1]) then
    record('expired', ARGV[1], nil, nil)
  end
end
local old = redis.call('GETDEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return old
""",
)


def cas_check(on_rewrite: str = "") -> str:
    """The compare half of both layouts' compare-and-swap: KEYS[1] the entry, ARGV[1] '1' if it was read as
    present (ARGV[2] the text read), ARGV[3] the new text. An entry that was present and is unchanged is
    rewritten (its expiry kept), after the Lua ``on_rewrite`` (which sees ``cur``, the text read); a changed
    one, or one that appeared, answers {0, current text}; an absent one falls through.
    """
    return f"""
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur ~= ARGV[2] then return {{0, cur}} end
  {on_rewrite}
  redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL')
  return {{1}}
end
if cur then return {{0, cur}} end
"""


CAS_CHECK: Final = cas_check()

# Compare-and-swap for update. KEYS[1] entry, KEYS[2] index; ARGV[1] '1' if the entry was read as present
# (then ARGV[2] is the text read), ARGV[3] new text, ARGV[4] key, ARGV[5] ttl ms for a new entry ('' = none);
# recording. Returns {1} when written, or {0, current text (nil if absent)} when the entry changed since it
# was read, so the caller can retry without another read.
CAS, CLUSTER_CAS = _writing(
    2,
    5,
    cas_check("if rec then record('updated', ARGV[4], cur, ARGV[3]) end")
    + """if ARGV[5] == '' then
  redis.call('ZADD', KEYS[2], 'inf', ARGV[4])
else
  local t = redis.call('TIME')
  local exp = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[5])
  redis.call('ZADD', KEYS[2], string.format('%d', exp), ARGV[4])
end
if rec then record('created', ARGV[4], nil, ARGV[3]) end
if ARGV[5] == '' then
  redis.call('SET', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[5])
end
return {1}
""",
)

# Several updates of one key, coalesced by one process into one compare-and-swap (``RedisBase``): as ``CAS``
# (same KEYS and first five ARGV; ARGV[3] the final text), and after the recorder's ARGV ``n``, then per update
# its new text ('' for the last: it is ARGV[3]) and its traceparent ('' when untraced). Each update is recorded
# as its own change (the first one ``created`` when the entry was absent), under its own traceparent.
CHAIN, CLUSTER_CHAIN = _writing(
    2,
    5,
    """
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur ~= ARGV[2] then return {0, cur} end
elseif cur then
  return {0, cur}
end
if rec then
  local n = tonumber(ARGV[rec_tail])
  local prev = cur
  for i = 1, n do
    local nxt = (i == n) and ARGV[3] or ARGV[rec_tail + 2 * i - 1]
    local p = ARGV[rec_tail + 2 * i]
    rec_p = (p ~= '') and p or nil
    record((prev == nil) and 'created' or 'updated', ARGV[4], prev, nxt)
    prev = nxt
  end
end
if cur then
  redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL')
  return {1}
end
if ARGV[5] == '' then
  redis.call('ZADD', KEYS[2], 'inf', ARGV[4])
  redis.call('SET', KEYS[1], ARGV[3])
else
  local t = redis.call('TIME')
  local exp = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[5])
  redis.call('ZADD', KEYS[2], string.format('%d', exp), ARGV[4])
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[5])
end
return {1}
""",
)

# KEYS[1] index; ARGV[1] entry-key prefix '<prefix>{<scope>}:'. Live keys whose entry exists.
KEYS = Script(
    NOW
    + """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%d', now), '+inf')
local out = {}
for _, m in ipairs(members) do
  if redis.call('EXISTS', ARGV[1] .. m) == 1 then out[#out + 1] = m end
end
return out
"""
)

# KEYS[1] index; ARGV[1] entry-key prefix; ARGV[2] 'WITHSCORES' or ''. Returns {members, texts}: the live
# members (flat member/score pairs when asked) and their texts (nil where the entry is gone).
VALUES = Script(
    NOW
    + """
local members
if ARGV[2] == '' then
  members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%d', now), '+inf')
else
  members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%d', now), '+inf', 'WITHSCORES')
end
local step = (ARGV[2] == '') and 1 or 2
local keys = {}
for i = 1, #members, step do keys[#keys + 1] = ARGV[1] .. members[i] end
local texts = {}
for i = 1, #keys, 1000 do
  local got = redis.call('MGET', unpack(keys, i, math.min(i + 999, #keys)))
  for j = 1, #got do texts[#texts + 1] = got[j] end
end
return {members, texts}
"""
)

# KEYS[1] index; ARGV[1] entry-key prefix; recording. Deletes every entry of the scope and the index; returns
# how many live entries were removed (DEL does not count keys Redis has already expired). Recording: one
# ``deleted`` per live entry, one ``expired`` per member whose entry Redis already dropped.
CLEAR, CLUSTER_CLEAR = _writing(
    1,
    1,
    """
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
if rec then
  for i = 1, #members, 1000 do
    local keys = {}
    for j = i, math.min(i + 999, #members) do keys[#keys + 1] = ARGV[1] .. members[j] end
    local got = redis.call('MGET', unpack(keys))
    for j = 1, #got do
      if got[j] then record('deleted', members[i + j - 1], got[j], nil)
      else record('expired', members[i + j - 1], nil, nil) end
    end
  end
end
local n = 0
for i = 1, #members, 1000 do
  local keys = {}
  for j = i, math.min(i + 999, #members) do keys[#keys + 1] = ARGV[1] .. members[j] end
  n = n + redis.call('DEL', unpack(keys))
end
redis.call('DEL', KEYS[1])
return n
""",
)

# KEYS[1] index; ARGV[1] entry-key prefix; ARGV[2] ttl ms ('' = none); recording ARGV[3..5] (traced: 3..6); from
# ARGV[rec_tail], key, text pairs. The index is written first: if it has the wrong type the script fails before
# any entry is touched (and before anything is recorded; MGET, unlike GET, never fails on a key of another type).
SET_MANY, CLUSTER_SET_MANY = _writing(
    1,
    2,
    """
local score = 'inf'
if ARGV[2] ~= '' then
  local t = redis.call('TIME')
  score = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[2]))
end
local z = {}
for i = rec_tail, #ARGV, 2 do
  z[#z + 1] = score
  z[#z + 1] = ARGV[i]
end
for i = 1, #z, 1000 do redis.call('ZADD', KEYS[1], unpack(z, i, math.min(i + 999, #z))) end
if rec then
  for i = rec_tail, #ARGV, 2000 do
    local keys = {}
    for j = i, math.min(i + 1999, #ARGV), 2 do keys[#keys + 1] = ARGV[1] .. ARGV[j] end
    local got = redis.call('MGET', unpack(keys))
    for j = 1, #got do
      local at = i + 2 * (j - 1)
      record(got[j] and 'updated' or 'created', ARGV[at], got[j], ARGV[at + 1])
    end
  end
end
for i = rec_tail, #ARGV, 2 do
  if ARGV[2] == '' then
    redis.call('SET', ARGV[1] .. ARGV[i], ARGV[i + 1])
  else
    redis.call('SET', ARGV[1] .. ARGV[i], ARGV[i + 1], 'PX', ARGV[2])
  end
end
return 1
""",
)

# KEYS[1] index; ARGV[1] entry-key prefix; recording ARGV[2..4] (traced: 2..5); ARGV[rec_tail..] keys. Returns how
# many live entries were removed. Recording: ``deleted`` per live entry, ``expired`` per member Redis already dropped,
# once per key even when a key is named twice.
DELETE_MANY, CLUSTER_DELETE_MANY = _writing(
    1,
    1,
    """
local n = 0
local seen = {}
for i = rec_tail, #ARGV, 1000 do
  local keys = {}
  local members = {}
  for j = i, math.min(i + 999, #ARGV) do
    keys[#keys + 1] = ARGV[1] .. ARGV[j]
    members[#members + 1] = ARGV[j]
  end
  if rec then
    local got = redis.call('MGET', unpack(keys))
    local scores = redis.call('ZMSCORE', KEYS[1], unpack(members))
    for j = 1, #members do
      local m = members[j]
      if not seen[m] then
        seen[m] = true
        if got[j] then record('deleted', m, got[j], nil)
        elseif scores[j] then record('expired', m, nil, nil) end
      end
    end
  end
  n = n + redis.call('DEL', unpack(keys))
  redis.call('ZREM', KEYS[1], unpack(members))
end
return n
""",
)

# KEYS[1] index; ARGV[1] entry-key prefix; ARGV[2] batch size; recording. Prunes up to a batch of expired
# members (and their strings, if Redis has not dropped them yet), recording an ``expired`` change for each
# (with the old text when the string was still there). Returns {pruned, members left}.
CLEANUP, CLUSTER_CLEANUP = _writing(
    1,
    2,
    NOW
    + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now), 'LIMIT', 0, tonumber(ARGV[2]))
if #expired > 0 then
  local keys = {}
  for i, m in ipairs(expired) do keys[i] = ARGV[1] .. m end
  if rec then
    local got = redis.call('MGET', unpack(keys))
    for i, m in ipairs(expired) do record('expired', m, got[i], nil) end
  end
  redis.call('DEL', unpack(keys))
  redis.call('ZREM', KEYS[1], unpack(expired))
end
return {#expired, redis.call('ZCARD', KEYS[1])}
""",
)

# --- the change feed's compaction ---------------------------------------------------------------------

# KEYS[1] global stream, KEYS[2] floor; ARGV[1] retention ms, ARGV[2] batch size. Removes up to a batch of
# the oldest changes older than the retention (by their ``t``, server time), never the newest one (it
# carries the revision a watch resumes from), and raises the floor to the highest revision removed, in the
# same script. Returns {removed, floor}.
COMPACT = Script(
    NOW
    + """
local cutoff = now - tonumber(ARGV[1])
local floor = tonumber(redis.call('GET', KEYS[2]) or '0')
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #newest == 0 then return {0, string.format('%d', floor)} end
local ids = {}
for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', tonumber(ARGV[2]))) do
  if e[1] == newest[1][1] then break end
  local f = e[2]
  if tonumber(f[#f]) >= cutoff then break end
  ids[#ids + 1] = e[1]
end
if #ids > 0 then
  redis.call('XDEL', KEYS[1], unpack(ids))
  local rev = tonumber(string.match(ids[#ids], '^(%d+)'))
  if rev > floor then
    floor = rev
    redis.call('SET', KEYS[2], string.format('%d', floor))
  end
end
return {#ids, string.format('%d', floor)}
"""
)


# KEYS[1] a scope's stream, KEYS[2] the stream registry; ARGV[1] the floor, ARGV[2] the scope's tag (its
# registry member), ARGV[3] batch size. Removes up to a batch of the stream's changes at or below the floor;
# then an empty stream is deleted and leaves the registry, else its score becomes its first retained
# revision. One script: a write adding to the stream meanwhile cannot be lost. Returns how many were removed.
def drop_oldest(upto: str, count: str) -> str:
    """Lua: delete from the stream KEYS[1] a batch (``count``) of its oldest changes with IDs up to ``upto`` (an
    XRANGE end), as ``old``; then ``first`` holds the first change kept (empty if none)."""
    return f"""
local old = redis.call('XRANGE', KEYS[1], '-', {upto}, 'COUNT', tonumber({count}))
if #old > 0 then
  local ids = {{}}
  for i, e in ipairs(old) do ids[i] = e[1] end
  redis.call('XDEL', KEYS[1], unpack(ids))
end
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
"""


TRIM_SCOPE = Script(
    drop_oldest("ARGV[1]", "ARGV[3]")
    + """if #first == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
else
  redis.call('ZADD', KEYS[2], 'XX', string.match(first[1][1], '^(%d+)'), ARGV[2])
end
return #old
"""
)

# --- the change feed's compaction on a Redis Cluster: per-scope streams, no global stream or counter ---------

# KEYS[1] the floor (here: the cutoff in server epoch ms; every change of an earlier ms may be gone); ARGV[1]
# retention ms. Raises the cutoff to now - retention (never lowers it: cleanups may overlap) and returns it.
CLUSTER_FLOOR = Script(
    NOW
    + """
local cutoff = now - tonumber(ARGV[1])
local floor = tonumber(redis.call('GET', KEYS[1]) or '0')
if cutoff > floor then
  redis.call('SET', KEYS[1], string.format('%d', cutoff))
  floor = cutoff
end
return string.format('%d', floor)
"""
)

# KEYS[1] a scope's stream; ARGV[1] the cutoff ms, ARGV[2] batch size, ARGV[3] retention ms. Removes up to a
# batch of the changes from before the cutoff. An emptied stream is not deleted at once: it keeps the highest
# ID removed (XINFO's max-deleted-entry-id), by which a reader tells a compacted scope from a quiet one, for
# one more retention period (a write in it makes it persist again). Returns {removed, first kept ID or ''}.
CLUSTER_TRIM_SCOPE = Script(
    drop_oldest("'(' .. ARGV[1] .. '-0'", "ARGV[2]")
    + """if #first == 0 then
  if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
  return {#old, ''}
end
return {#old, first[1][1]}
"""
)

# --- the motia layout: one string per entry, no index ----------------------------------------------

# Compare-and-swap for update. KEYS[1] entry; ARGV[1] '1' if read as present (ARGV[2] the text read), ARGV[3]
# new text, ARGV[4] ttl ms for a new entry ('' = none). Returns {1}, or {0, current text} after a lost race.
MOTIA_CAS = Script(
    CAS_CHECK
    + """if ARGV[4] == '' then
  redis.call('SET', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return {1}
"""
)

# KEYS entries; ARGV[1] ttl ms ('' = none), ARGV[2..] their texts, in order. All or nothing, one round trip.
MOTIA_SET_MANY = Script(
    """
for i = 1, #KEYS do
  if ARGV[1] == '' then
    redis.call('SET', KEYS[i], ARGV[i + 1])
  else
    redis.call('SET', KEYS[i], ARGV[i + 1], 'PX', ARGV[1])
  end
end
return #KEYS
"""
)

# --- durable triggers (SPEC §11): each script touches the keys of one trigger, so one slot -------------
#
# Revisions (start, positions, done) pass through as the decimal text Python sent: Lua's numbers are
# doubles, so nothing that could grow past 2**53 is computed with. Leases are server epoch ms (TIME).

# KEYS[1] meta, KEYS[2] parts; ARGV[1] start revision, ARGV[2] partitions. Creates the trigger unless it
# exists; returns its start revision.
TRIGGER_REGISTER = Script(
    """
local start = redis.call('HGET', KEYS[1], 'start')
if start then return start end
redis.call('HSET', KEYS[1], 'start', ARGV[1], 'partitions', ARGV[2], 'handled', '0', 'skipped', '0')
local f = {}
for i = 0, tonumber(ARGV[2]) - 1 do
  f[#f + 1] = i .. ':position'; f[#f + 1] = ARGV[1]
  f[#f + 1] = i .. ':done'; f[#f + 1] = ''
end
redis.call('HSET', KEYS[2], unpack(f))
return ARGV[1]
"""
)

# KEYS[1] meta, KEYS[2] parts, KEYS[3] workers; ARGV[1] owner, ARGV[2] lease ms. Heartbeats the owner, drops
# dead workers, renews the owner's live claims up to its fair share (ceil(partitions / live workers)) and
# frees the rest, then claims free or expired partitions (lowest first) up to the share. Returns a flat
# {partition, position, done, ...} of the owner's claims, by partition; nil for an unknown trigger.
TRIGGER_ACQUIRE = Script(
    NOW
    + """
local n = tonumber(redis.call('HGET', KEYS[1], 'partitions'))
if not n then return false end
local untl = string.format('%d', now + tonumber(ARGV[2]))
redis.call('ZADD', KEYS[3], untl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', string.format('%d', now))
local share = math.ceil(n / redis.call('ZCARD', KEYS[3]))
local f = {}
for i = 0, n - 1 do f[#f + 1] = i .. ':owner'; f[#f + 1] = i .. ':until' end
local got = redis.call('HMGET', KEYS[2], unpack(f))
local keep, free, surplus = {}, {}, {}
for i = 0, n - 1 do
  local who, till = got[2 * i + 1], tonumber(got[2 * i + 2] or '0')
  if not who or till <= now then
    free[#free + 1] = i
  elseif who == ARGV[1] then
    -- Beyond the share: renewed and flagged, the owner hands it back once its handlers are done.
    if #keep >= share then surplus[i] = true end
    keep[#keep + 1] = i
  end
end
for _, i in ipairs(free) do
  if #keep >= share then break end
  keep[#keep + 1] = i
end
table.sort(keep)
local out = {}
if #keep > 0 then
  local set = {}
  for _, i in ipairs(keep) do
    set[#set + 1] = i .. ':owner'; set[#set + 1] = ARGV[1]
    set[#set + 1] = i .. ':until'; set[#set + 1] = untl
  end
  redis.call('HSET', KEYS[2], unpack(set))
  for _, i in ipairs(keep) do
    local pd = redis.call('HMGET', KEYS[2], i .. ':position', i .. ':done')
    out[#out + 1] = i; out[#out + 1] = pd[1]; out[#out + 1] = pd[2] or ''
    out[#out + 1] = surplus[i] and 1 or 0
  end
end
return out
"""
)

# KEYS[1] meta, KEYS[2] parts; ARGV[1] owner, ARGV[2] partition, ARGV[3] position, ARGV[4] done (comma-
# separated), ARGV[5] handled, ARGV[6] skipped, ARGV[7] lease ms. Fenced: writes only while the owner holds
# the partition and its lease has not run out (server clock); renews the lease. Returns 1, or 0 if not held.
TRIGGER_COMMIT = Script(
    NOW
    + """
local p = ARGV[2]
local held = redis.call('HMGET', KEYS[2], p .. ':owner', p .. ':until')
if held[1] ~= ARGV[1] or tonumber(held[2] or '0') <= now then return 0 end
redis.call('HSET', KEYS[2], p .. ':position', ARGV[3], p .. ':done', ARGV[4],
  p .. ':until', string.format('%d', now + tonumber(ARGV[7])))
if ARGV[5] ~= '0' then redis.call('HINCRBY', KEYS[1], 'handled', ARGV[5]) end
if ARGV[6] ~= '0' then redis.call('HINCRBY', KEYS[1], 'skipped', ARGV[6]) end
return 1
"""
)

# KEYS[1] meta, KEYS[2] parts, KEYS[3] workers; ARGV[1] owner. Frees every partition of the owner and
# forgets its heartbeat.
TRIGGER_RELEASE = Script(
    """
-- ARGV[2..]: only these partitions (the heartbeat stays); none: every claim and the heartbeat.
if #ARGV == 1 then redis.call('ZREM', KEYS[3], ARGV[1]) end
local n = tonumber(redis.call('HGET', KEYS[1], 'partitions'))
if not n then return 0 end
local only = nil
if #ARGV > 1 then
  only = {}
  for j = 2, #ARGV do only[tonumber(ARGV[j])] = true end
end
local f = {}
for i = 0, n - 1 do f[#f + 1] = i .. ':owner' end
local got = redis.call('HMGET', KEYS[2], unpack(f))
local drop = {}
for i = 0, n - 1 do
  if got[i + 1] == ARGV[1] and (only == nil or only[i]) then
    drop[#drop + 1] = i .. ':owner'; drop[#drop + 1] = i .. ':until'
  end
end
if #drop > 0 then redis.call('HDEL', KEYS[2], unpack(drop)) end
return #drop / 2
"""
)

# KEYS[1] parked, KEYS[2] retry; ARGV[1] revision, ARGV[2] the record's JSON text up to the value of its last
# member, ``parked_at``, which is the server time in ms (the script closes the object). Replaces an earlier
# record of the revision, and its retry flag.
TRIGGER_PARK = Script(
    NOW
    + """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. string.format('%d', now) .. '}')
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""
)

# KEYS[1] parked, KEYS[2] retry; ARGV[1] revision. Forgets a parked change.
TRIGGER_UNPARK = Script(
    """
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
"""
)

# KEYS[1] parked, KEYS[2] retry; ARGV[1] limit. Takes (clears) up to ``limit`` retry flags, lowest revision
# first, and returns the flat {revision, record, ...} of those still parked.
TRIGGER_TAKE_RETRIES = Script(
    """
local revs = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1)
if #revs == 0 then return {} end
redis.call('ZREM', KEYS[2], unpack(revs))
local recs = redis.call('HMGET', KEYS[1], unpack(revs))
local out = {}
for i = 1, #revs do
  if recs[i] then out[#out + 1] = revs[i]; out[#out + 1] = recs[i] end
end
return out
"""
)

# KEYS[1] parked, KEYS[2] retry. Flags every parked change for a retry; returns how many there are.
TRIGGER_REQUEST_RETRY = Script(
    """
local revs = redis.call('HKEYS', KEYS[1])
for i = 1, #revs, 500 do
  local z = {}
  for j = i, math.min(i + 499, #revs) do z[#z + 1] = revs[j]; z[#z + 1] = revs[j] end
  redis.call('ZADD', KEYS[2], unpack(z))
end
return #revs
"""
)

# KEYS[1] meta, KEYS[2] parts, KEYS[3] workers, KEYS[4] parked, KEYS[5] retry (read only). Returns nil for an
# unknown trigger, else {{start, partitions, handled, skipped}, positions by partition, live workers,
# flat {revision, record, ...} of the parked changes, revisions flagged for a retry}: one consistent view.
TRIGGER_STATUS = Script(
    NOW
    + """
local meta = redis.call('HMGET', KEYS[1], 'start', 'partitions', 'handled', 'skipped')
if not meta[1] then return false end
local f = {}
for i = 0, tonumber(meta[2]) - 1 do f[#f + 1] = i .. ':position' end
local positions = {}
if #f > 0 then positions = redis.call('HMGET', KEYS[2], unpack(f)) end
return {
  meta,
  positions,
  redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. string.format('%d', now), '+inf'),
  redis.call('HGETALL', KEYS[4]),
  redis.call('ZRANGE', KEYS[5], 0, -1),
}
"""
)

SCRIPTS: Final = (
    CLUSTER_SET,
    CLUSTER_DELETE,
    CLUSTER_CAS,
    CLUSTER_CHAIN,
    CLUSTER_CLEAR,
    CLUSTER_SET_MANY,
    CLUSTER_DELETE_MANY,
    CLUSTER_CLEANUP,
    CLUSTER_FLOOR,
    CLUSTER_TRIM_SCOPE,
    SET,
    DELETE,
    CAS,
    CHAIN,
    KEYS,
    VALUES,
    CLEAR,
    SET_MANY,
    DELETE_MANY,
    CLEANUP,
    COMPACT,
    TRIM_SCOPE,
    MOTIA_CAS,
    MOTIA_SET_MANY,
    TRIGGER_REGISTER,
    TRIGGER_ACQUIRE,
    TRIGGER_COMMIT,
    TRIGGER_RELEASE,
    TRIGGER_PARK,
    TRIGGER_UNPARK,
    TRIGGER_TAKE_RETRIES,
    TRIGGER_REQUEST_RETRY,
    TRIGGER_STATUS,
)
