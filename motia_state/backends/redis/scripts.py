"""The Redis backend's Lua scripts: each touches the keys of one scope, so one Cluster slot.

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


# KEYS[1] entry, KEYS[2] index; ARGV[1] JSON, ARGV[2] key, ARGV[3] ttl ms ('' = none). Returns the old text.
SET = Script(
    """
local old
if ARGV[3] == '' then
  old = redis.call('SET', KEYS[1], ARGV[1], 'GET')
  redis.call('ZADD', KEYS[2], 'inf', ARGV[2])
else
  old = redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3], 'GET')
  local t = redis.call('TIME')
  local exp = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[3])
  redis.call('ZADD', KEYS[2], string.format('%d', exp), ARGV[2])
end
return old
"""
)

# KEYS[1] entry, KEYS[2] index; ARGV[1] key. Returns the old text.
DELETE = Script(
    """
local old = redis.call('GETDEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return old
"""
)

# The compare half of both layouts' compare-and-swap: KEYS[1] the entry, ARGV[1] '1' if it was read as present
# (ARGV[2] the text read), ARGV[3] the new text. An entry that was present and is unchanged is rewritten (its
# expiry kept); a changed one, or one that appeared, answers {0, current text}; an absent one falls through.
CAS_CHECK: Final = """
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur ~= ARGV[2] then return {0, cur} end
  redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL')
  return {1}
end
if cur then return {0, cur} end
"""

# Compare-and-swap for update. KEYS[1] entry, KEYS[2] index; ARGV[1] '1' if the entry was read as present
# (then ARGV[2] is the text read), ARGV[3] new text, ARGV[4] key, ARGV[5] ttl ms for a new entry ('' = none).
# Returns {1} when written, or {0, current text (nil if absent)} when the entry changed since it was read,
# so the caller can retry without another read.
CAS = Script(
    CAS_CHECK
    + """if ARGV[5] == '' then
  redis.call('SET', KEYS[1], ARGV[3])
  redis.call('ZADD', KEYS[2], 'inf', ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[5])
  local t = redis.call('TIME')
  local exp = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[5])
  redis.call('ZADD', KEYS[2], string.format('%d', exp), ARGV[4])
end
return {1}
"""
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

# KEYS[1] index; ARGV[1] entry-key prefix. Deletes every entry of the scope and the index; returns how many
# live entries were removed (DEL does not count keys Redis has already expired).
CLEAR = Script(
    """
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
local n = 0
for i = 1, #members, 1000 do
  local keys = {}
  for j = i, math.min(i + 999, #members) do keys[#keys + 1] = ARGV[1] .. members[j] end
  n = n + redis.call('DEL', unpack(keys))
end
redis.call('DEL', KEYS[1])
return n
"""
)

# KEYS[1] index; ARGV[1] entry-key prefix; ARGV[2] ttl ms ('' = none); ARGV[3..] key, text pairs.
# The index is written first: if it has the wrong type the script fails before any entry is touched.
SET_MANY = Script(
    """
local score = 'inf'
if ARGV[2] ~= '' then
  local t = redis.call('TIME')
  score = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[2]))
end
local z = {}
for i = 3, #ARGV, 2 do
  z[#z + 1] = score
  z[#z + 1] = ARGV[i]
end
for i = 1, #z, 1000 do redis.call('ZADD', KEYS[1], unpack(z, i, math.min(i + 999, #z))) end
for i = 3, #ARGV, 2 do
  if ARGV[2] == '' then
    redis.call('SET', ARGV[1] .. ARGV[i], ARGV[i + 1])
  else
    redis.call('SET', ARGV[1] .. ARGV[i], ARGV[i + 1], 'PX', ARGV[2])
  end
end
return 1
"""
)

# KEYS[1] index; ARGV[1] entry-key prefix; ARGV[2..] keys. Returns how many live entries were removed.
DELETE_MANY = Script(
    """
local n = 0
for i = 2, #ARGV, 1000 do
  local keys = {}
  local members = {}
  for j = i, math.min(i + 999, #ARGV) do
    keys[#keys + 1] = ARGV[1] .. ARGV[j]
    members[#members + 1] = ARGV[j]
  end
  n = n + redis.call('DEL', unpack(keys))
  redis.call('ZREM', KEYS[1], unpack(members))
end
return n
"""
)

# KEYS[1] index; ARGV[1] entry-key prefix; ARGV[2] batch size. Prunes up to a batch of expired members
# (and their strings, if Redis has not dropped them yet). Returns {pruned, members left}.
CLEANUP = Script(
    NOW
    + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now), 'LIMIT', 0, tonumber(ARGV[2]))
if #expired > 0 then
  local keys = {}
  for i, m in ipairs(expired) do keys[i] = ARGV[1] .. m end
  redis.call('DEL', unpack(keys))
  redis.call('ZREM', KEYS[1], unpack(expired))
end
return {#expired, redis.call('ZCARD', KEYS[1])}
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

SCRIPTS: Final = (SET, DELETE, CAS, KEYS, VALUES, CLEAR, SET_MANY, DELETE_MANY, CLEANUP, MOTIA_CAS, MOTIA_SET_MANY)
