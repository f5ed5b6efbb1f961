"""The Lua scripts that make each write one atomic compare-and-swap inside Redis.

Every script takes the lease's two keys, ``KEYS[1]`` the record (a hash with fields ``data`` and
``version``) and ``KEYS[2]`` its version counter (a plain integer that is never deleted), and
answers an array whose first element is a status:

* ``1``: done; the second element is the new version (create, update; ``0`` for a delete), and a
  third, if present, is Redis's refusal of the change's ``PUBLISH`` (see below).
* ``0``: there is no record (update, delete) or there is one (create; then the second element is
  its version).
* ``-1``: the record's version is not the expected one; the second element is the stored one.

The last two arguments of every script are the store's change channel and the lease key as the
caller named it. A script that wrote announces the write there (:data:`ANNOUNCE`), inside the
script and so in the order of the writes: ``key`` for a delete, ``key\\nversion\\ndata`` for a
create or update (a key has no control characters, a version no newline), which is exactly what
a read of that version returns. The ``PUBLISH`` runs under ``redis.pcall``: an ACL user without
the channel (Redis 7 gives new users none) still writes, and the refusal comes back in the answer
instead of failing a write that was already applied (a script does not roll back).

New versions come from ``INCR`` on the counter, raised above the record's own version if the
counter was lost (evicted or deleted by hand), so a version never goes back while the record
exists. Both keys carry the same hash tag, so Redis Cluster keeps them in one slot.

Not here: sending the scripts (``_storage``).
"""

from __future__ import annotations

import hashlib

CREATED = 1
MISSING_OR_PRESENT = 0
MISMATCH = -1

_NEXT_VERSION = """
local function next_version(floor)
  local version = redis.call('INCR', KEYS[2])
  if floor and version <= floor then
    version = floor + 1
    redis.call('SET', KEYS[2], version)
  end
  return version
end
"""

ANNOUNCE = """
local function announce(message)
  local sent = redis.pcall('PUBLISH', ARGV[#ARGV - 1], message)
  if type(sent) == 'table' and sent.err then return sent.err end
  return nil
end
local function announce_write(version, data)
  return announce(ARGV[#ARGV] .. '\\n' .. string.format('%d', version) .. '\\n' .. data)
end
"""

_CHECK_EXPECTED = """
local current = redis.call('HGET', KEYS[1], 'version')
if not current then return {0} end
if current ~= ARGV[1] then return {-1, current} end
"""

CREATE = (
    _NEXT_VERSION
    + ANNOUNCE
    + """
local existing = redis.call('HGET', KEYS[1], 'version')
if existing or redis.call('EXISTS', KEYS[1]) == 1 then return {0, existing} end
local version = next_version(nil)
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'version', version)
return {1, version, announce_write(version, ARGV[1])}
"""
)

UPDATE = (
    _NEXT_VERSION
    + ANNOUNCE
    + _CHECK_EXPECTED
    + """
local version = next_version(tonumber(current))
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'version', version)
return {1, version, announce_write(version, ARGV[2])}
"""
)

DELETE = (
    ANNOUNCE
    + _CHECK_EXPECTED
    + """
redis.call('DEL', KEYS[1])
return {1, 0, announce(ARGV[#ARGV])}
"""
)


def sha1(script: str) -> str:
    """The digest ``EVALSHA`` names a script by."""
    return hashlib.sha1(script.encode("utf-8"), usedforsecurity=False).hexdigest()
