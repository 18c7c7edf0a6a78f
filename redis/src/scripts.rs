//! Topic history in Redis: each kept topic has a hash (`<prefix>h:<topic>`: its epoch and its
//! last offset) and a stream (`<prefix>s:<topic>`: its last messages, with the ids
//! `<offset>-1`), both expiring after the history's age unless used. Two Lua scripts keep
//! them, each atomic in Redis: one publishes (numbering the message if the topic is kept), one
//! says where a topic stands (starting its history if asked to).
//!
//! A numbered message crosses pub/sub as `#<epoch>:<offset>:` then the payload; a message of a
//! topic nobody keeps goes as the payload alone (whose first byte is never `#`).
//!
//! A script costs Redis about four plain `PUBLISH`es, so a node publishes with a plain
//! `PUBLISH` to the topics it knows nobody keeps. It learns which are kept from the script's
//! answer (the first publish to a topic goes through it) and from the announcements on the
//! channel `<prefix>\x01kept`, which the `locate` script sends when a topic's history starts
//! and nodes that follow a topic repeat while they do. A plain message that reaches a topic
//! kept meanwhile (in the moment before the announcement arrived) is not in its history:
//! the nodes that follow the topic start it again under a new epoch, so that no client resumes
//! across it without being told.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use wsock_runtime::{Locate, Located};

use crate::resp::{self, Answer};

/// Publishes `ARGV[2]` to the channel `ARGV[1]`: numbered and kept (`MAXLEN ~ ARGV[3]`, for
/// `ARGV[4]` ms) if the topic's history is kept (answers 1), as it is otherwise (answers 0).
pub(crate) const PUBLISH: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  redis.call('PUBLISH', ARGV[1], ARGV[2])
  return 0
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
local added = redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], offset .. '-1', 't', ms, 'm', ARGV[2])
if type(added) == 'table' and added.err then
  -- A stream left from an older epoch: it goes.
  redis.call('DEL', KEYS[2])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], offset .. '-1', 't', ms, 'm', ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[1], '#' .. epoch .. ':' .. offset .. ':' .. ARGV[2])
return 1
";

/// Says where a topic stands: `{epoch, last}`, then `offset, payload` for each message after
/// `ARGV[5]` if the client's epoch `ARGV[4]` is the topic's, none of them is missing, older
/// than `ARGV[8]` ms or over the replay (`ARGV[6]` messages, `ARGV[7]` bytes); `{'', 0}` if
/// the topic is not kept and `ARGV[1]` is not `1` (otherwise its history starts, under the
/// epoch `ARGV[2]`, announced on the channel `ARGV[9]`; and starts again so if it is under the
/// epoch `ARGV[10]`). Keeps the history for `ARGV[3]` ms more.
const LOCATE: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if ARGV[1] == '1' and (not epoch or epoch == ARGV[10]) then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[2], 'offset', 0)
  epoch = ARGV[2]
  redis.call('PUBLISH', ARGV[9], ARGV[11])
end
if not epoch then
  return {'', 0}
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local last = tonumber(redis.call('HGET', KEYS[1], 'offset'))
local out = {epoch, last}
if ARGV[4] ~= epoch then
  return out
end
local after = tonumber(ARGV[5])
if after >= last or last - after > tonumber(ARGV[6]) then
  return out
end
local now = redis.call('TIME')
local oldest = now[1] * 1000 + math.floor(now[2] / 1000) - tonumber(ARGV[8])
local bytes = 0
local next = after + 1
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], next .. '-1', '+')) do
  local id, fields = entry[1], entry[2]
  local offset = tonumber(string.sub(id, 1, string.find(id, '-') - 1))
  bytes = bytes + #fields[4]
  if offset ~= next or tonumber(fields[2]) < oldest or bytes > tonumber(ARGV[7]) then
    return {epoch, last}
  end
  out[#out + 1] = offset
  out[#out + 1] = fields[4]
  next = next + 1
end
if next ~= last + 1 then
  return {epoch, last}
end
return out
";

/// The most topics [`Known`] remembers: past it, it forgets them all, and learns again.
const KNOWN_MAX: usize = 100_000;

/// What this node knows of which topics Redis keeps history for.
#[derive(Default)]
pub(crate) struct Known {
    /// Whether each topic was kept when last heard of.
    topics: HashMap<String, bool>,
}

impl Known {
    /// Whether a publish to `topic` goes through the script: it is kept, or not known. (The
    /// script's answer says if it is kept no more.)
    pub(crate) fn scripted(&self, topic: &str) -> bool {
        self.topics.get(topic) != Some(&false)
    }

    /// Whether `topic` is kept: an announcement, or what the script did.
    pub(crate) fn note(&mut self, topic: &str, kept: bool) {
        if let Some(known) = self.topics.get_mut(topic) {
            *known = kept;
            return;
        }
        if self.topics.len() >= KNOWN_MAX {
            self.topics.clear();
        }
        self.topics.insert(topic.to_owned(), kept);
    }
}

/// The keys of `topic`'s history: its hash and its stream.
pub(crate) fn keys(prefix: &str, topic: &str) -> (String, String) {
    (format!("{prefix}h:{topic}"), format!("{prefix}s:{topic}"))
}

/// How long a kept topic's history outlives its last use: the history's age, at least a
/// second.
pub(crate) fn ttl_ms(age: Duration) -> u64 {
    u64::try_from(age.as_millis())
        .unwrap_or(u64::MAX)
        .max(1_000)
}

/// The channel on which nodes announce the topics whose history is kept.
pub(crate) fn announcements(prefix: &str) -> String {
    format!("{prefix}\u{1}kept")
}

/// The `EVAL` that answers `locate` about `topic`.
pub(crate) fn locate(prefix: &str, topic: &str, locate: &Locate) -> Vec<u8> {
    let (hash, stream) = keys(prefix, topic);
    let history = &locate.history;
    let epoch = new_epoch();
    let (their_epoch, after) = match &locate.after {
        Some((epoch, offset)) => (epoch.as_str(), offset.to_string()),
        None => ("", "0".to_owned()),
    };
    let numbers = [
        ttl_ms(history.age_limit()).to_string(),
        history.replay_limit().to_string(),
        history.byte_limit().to_string(),
        u64::try_from(history.age_limit().as_millis())
            .unwrap_or(u64::MAX)
            .to_string(),
    ];
    let channel = announcements(prefix);
    let replace = locate.replace.as_deref().unwrap_or("");
    let args: [&[u8]; 16] = [
        b"EVAL",
        LOCATE.as_bytes(),
        b"2",
        hash.as_bytes(),
        stream.as_bytes(),
        if locate.create { b"1" } else { b"0" },
        epoch.as_bytes(),
        numbers[0].as_bytes(),
        their_epoch.as_bytes(),
        after.as_bytes(),
        numbers[1].as_bytes(),
        numbers[2].as_bytes(),
        numbers[3].as_bytes(),
        channel.as_bytes(),
        replace.as_bytes(),
        topic.as_bytes(),
    ];
    resp::command(args.into_iter())
}

/// An epoch no other is likely to be: from a random state, a count, the process and the time.
fn new_epoch() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    format!("{:016x}", hasher.finish())
}

/// Reads the answer of the `locate` script.
pub(crate) fn located(answer: Answer) -> Result<Located, String> {
    let list = match answer {
        Answer::List(list) => list,
        Answer::Error(error) => return Err(error),
        other => return Err(format!("an unexpected answer: {other:?}")),
    };
    let number = |bytes: &Bytes| -> Result<u64, String> {
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| format!("not an offset: {bytes:?}"))
    };
    let [epoch, last, rest @ ..] = &list[..] else {
        return Err("an answer without a position".to_owned());
    };
    let epoch = std::str::from_utf8(epoch).map_err(|_| "an epoch that is not text")?;
    let mut messages = Vec::with_capacity(rest.len() / 2);
    for pair in rest.chunks(2) {
        let [offset, payload] = pair else {
            return Err("a message without its offset".to_owned());
        };
        messages.push((number(offset)?, Bytes::copy_from_slice(payload)));
    }
    Ok(Located::new(epoch, number(last)?, messages))
}

/// A numbered message's epoch and offset, and where its payload starts.
pub(crate) fn numbered(payload: &[u8]) -> Option<(&str, u64, usize)> {
    let rest = payload.strip_prefix(b"#")?;
    let colon = rest.iter().position(|&b| b == b':')?;
    let epoch = std::str::from_utf8(&rest[..colon]).ok()?;
    let rest = &rest[colon + 1..];
    let colon2 = rest.iter().position(|&b| b == b':')?;
    let offset = std::str::from_utf8(&rest[..colon2]).ok()?.parse().ok()?;
    Some((epoch, offset, 1 + colon + 1 + colon2 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_messages_are_read_and_others_are_not() {
        let payload = b"#00ab:42:wsck2 body";
        let (epoch, offset, at) = numbered(payload).unwrap();
        assert_eq!((epoch, offset), ("00ab", 42));
        assert_eq!(&payload[at..], b"wsck2 body");
        for plain in [&b"wsck2"[..], b"#", b"#ab", b"#ab:x:", b"#ab:12"] {
            assert!(numbered(plain).is_none(), "{plain:?}");
        }
    }

    #[test]
    fn answers_are_read_or_refused() {
        let list = |items: &[&'static [u8]]| {
            Answer::List(items.iter().map(|item| Bytes::from_static(item)).collect())
        };
        let located = located(list(&[b"e1", b"7", b"6", b"x", b"7", b"y"])).unwrap();
        assert_eq!((located.epoch.as_str(), located.last), ("e1", 7));
        assert_eq!(
            located.messages,
            [(6, Bytes::from_static(b"x")), (7, Bytes::from_static(b"y"))]
        );
        assert!(super::located(list(&[b"e1"])).is_err());
        assert!(super::located(list(&[b"e1", b"7", b"6"])).is_err());
        assert!(super::located(list(&[b"e1", b"seven"])).is_err());
        assert!(super::located(Answer::Error("NOSCRIPT".to_owned())).is_err());
    }
}
