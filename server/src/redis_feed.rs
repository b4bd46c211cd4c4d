//! What one server relays of a room shared through Redis (part of the Redis engine; the server
//! does not use it yet): plain logic, event in, steps out, so the rules are unit-tested without
//! Redis.
//!
//! Pub/sub delivers at most once: a server whose subscription dropped (a reconnect, the output
//! buffer limit) misses publications without being told. Ids count by one in each room (the
//! post script's `HINCRBY`), so a hole in them is a missed message: the feed holds back what
//! comes after a hole, asks for the stream after the last id it relayed, and relays the fetched
//! messages and then what it held, in order, each once. A periodic look at the room's head
//! (its epoch and last id) finds what was missed at the end, where no later publication shows
//! a hole. A new epoch means the Redis lost the room's data (or the room started over): the
//! feed says so, so that the room can tell its members to reload instead of mixing ids of two
//! epochs. Subscribe first, then read the head, then start the feed: nothing published
//! between the two is missed, and anything read twice is dropped by id.

use std::collections::{BTreeMap, VecDeque};

use protocol::MessageId;

/// What the room should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Relay these messages to the members, in this order (each exactly once).
    Relay(Vec<(MessageId, String)>),
    /// Read the room's stream after this id (and answer with [`RoomFeed::fetched`]).
    Fetch { after: MessageId },
    /// These ids are gone from the stream (past its retention) before this server relayed
    /// them: tell the members that older messages were not loaded.
    Lost { from: MessageId, to: MessageId },
    /// The room's epoch changed: what the members have belongs to another history.
    Reset { epoch: String },
    /// The room's history in `epoch` is not the one relayed: its head went back below the
    /// last id relayed, or an id relayed came again with another message (Redis failed over
    /// to a replica that lacked the latest writes, or lost the room). The room must start a
    /// new epoch, so that nobody mixes the two histories.
    Diverged { epoch: String },
}

/// How many of the last relayed messages the feed remembers (by a hash), to tell a repeat
/// from another message under a relayed id.
const REMEMBERED: usize = 1024;

/// A new epoch: 16 random hex digits (never a `:`), or, should the OS have no random numbers,
/// digits of the clock (still another epoch than any before).
pub fn new_epoch() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        bytes = (nanos as u64).to_le_bytes();
    }
    format!("{:016x}", u64::from_le_bytes(bytes))
}

fn fingerprint(message: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    message.hash(&mut hasher);
    hasher.finish()
}

/// One server's view of one room's shared history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomFeed {
    /// The epoch of what was relayed (`None`: the room had no message yet).
    epoch: Option<String>,
    /// The last id relayed.
    last: MessageId,
    /// Publications after a hole, held until the hole is filled.
    held: BTreeMap<MessageId, String>,
    /// The fetch asked for and not answered yet (the id it reads after).
    asked: Option<MessageId>,
    /// The feed started without an epoch and has learnt one since, not told yet.
    learnt: bool,
    /// The last relayed messages' ids and fingerprints, oldest first.
    relayed: VecDeque<(MessageId, u64)>,
}

impl RoomFeed {
    /// A feed that has relayed up to `last` in `epoch` (from the room's head, read after
    /// subscribing).
    pub fn start(epoch: Option<String>, last: MessageId) -> Self {
        RoomFeed {
            epoch,
            last,
            held: BTreeMap::new(),
            asked: None,
            learnt: false,
            relayed: VecDeque::new(),
        }
    }

    /// The epoch learnt since the feed started without one (the room's first message), once.
    pub fn first_epoch(&mut self) -> Option<String> {
        if !std::mem::take(&mut self.learnt) {
            return None;
        }
        self.epoch.clone()
    }

    /// The last id relayed.
    pub fn last(&self) -> MessageId {
        self.last
    }

    /// A publication of the room arrived.
    pub fn published(&mut self, epoch: &str, id: MessageId, message: String) -> Vec<Step> {
        let mut steps = self.adopt(epoch);
        if id <= self.last {
            // A repeat (read from the stream, then published), unless its message differs.
            let differs = self
                .relayed
                .iter()
                .find(|(relayed, _)| *relayed == id)
                .is_some_and(|(_, known)| *known != fingerprint(&message));
            if differs && steps.is_empty() {
                return vec![Step::Diverged { epoch: epoch.to_owned() }];
            }
            return steps;
        }
        self.held.insert(id, message);
        steps.extend(self.drain());
        steps
    }

    /// The answer to a [`Step::Fetch`] after `after`: the stream's messages after it, oldest
    /// first, and whether the page was full (more may follow). An answer to another fetch than
    /// the one under way (one asked before the feed started over) is dropped.
    pub fn fetched(
        &mut self,
        after: MessageId,
        messages: Vec<(MessageId, String)>,
        full: bool,
    ) -> Vec<Step> {
        if self.asked != Some(after) {
            return Vec::new();
        }
        self.asked = None;
        // What was fetched and what was held, together, in id order. Up to the page's last id
        // (or all of it, when the page was not full: the stream was read to its end, and what
        // is held was published before that read), a hole is gone from the stream.
        let bound = match messages.last() {
            Some((top, _)) if full => *top,
            _ if full => after,
            _ => MessageId::MAX,
        };
        for (id, message) in messages {
            if id > self.last {
                self.held.insert(id, message);
            }
        }
        let mut steps = Vec::new();
        let mut relay = Vec::new();
        while let Some(entry) = self.held.first_entry() {
            let id = *entry.key();
            if id > bound {
                break;
            }
            let message = entry.remove();
            if id <= self.last {
                continue;
            }
            if id > self.last + 1 {
                if !relay.is_empty() {
                    steps.push(Step::Relay(std::mem::take(&mut relay)));
                }
                steps.push(Step::Lost { from: self.last + 1, to: id - 1 });
            }
            self.last = id;
            self.remember(id, &message);
            relay.push((id, message));
        }
        if !relay.is_empty() {
            steps.push(Step::Relay(relay));
        }
        if full {
            self.asked = Some(self.last);
            steps.push(Step::Fetch { after: self.last });
        } else {
            steps.extend(self.drain());
        }
        steps
    }

    /// The room's head, read now and then: its epoch and last id (`None`: no message yet).
    pub fn checked(&mut self, head: Option<(String, MessageId)>) -> Vec<Step> {
        let Some((epoch, last)) = head else {
            // The room is gone from Redis (it lost its data) after the feed relayed some of it.
            return match &self.epoch {
                Some(epoch) if self.last > 0 => vec![Step::Diverged { epoch: epoch.clone() }],
                _ => Vec::new(),
            };
        };
        let mut steps = self.adopt(&epoch);
        if steps.is_empty() && last < self.last {
            return vec![Step::Diverged { epoch }];
        }
        if last > self.last && self.asked.is_none() {
            self.asked = Some(self.last);
            steps.push(Step::Fetch { after: self.last });
        }
        steps
    }

    /// Takes `epoch` as the room's: a different one than known starts the feed over.
    fn adopt(&mut self, epoch: &str) -> Vec<Step> {
        match &self.epoch {
            Some(known) if known == epoch => Vec::new(),
            None => {
                self.epoch = Some(epoch.to_owned());
                self.learnt = true;
                Vec::new()
            }
            Some(_) => {
                *self = RoomFeed::start(Some(epoch.to_owned()), 0);
                vec![Step::Reset { epoch: epoch.to_owned() }]
            }
        }
    }

    fn remember(&mut self, id: MessageId, message: &str) {
        if self.relayed.len() == REMEMBERED {
            self.relayed.pop_front();
        }
        self.relayed.push_back((id, fingerprint(message)));
    }

    /// Relays what is held from the next id on; at a hole, asks for the stream once.
    fn drain(&mut self) -> Vec<Step> {
        // Nothing at or below the last relayed id is kept.
        self.held = self.held.split_off(&(self.last + 1));
        let mut relay = Vec::new();
        while let Some(message) = self.held.remove(&(self.last + 1)) {
            self.last += 1;
            self.remember(self.last, &message);
            relay.push((self.last, message));
        }
        let mut steps = Vec::new();
        if !relay.is_empty() {
            steps.push(Step::Relay(relay));
        }
        if !self.held.is_empty() && self.asked.is_none() {
            self.asked = Some(self.last);
            steps.push(Step::Fetch { after: self.last });
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: MessageId) -> (MessageId, String) {
        (id, format!("m{id}"))
    }

    fn publish(feed: &mut RoomFeed, id: MessageId) -> Vec<Step> {
        feed.published("e", id, format!("m{id}"))
    }

    /// Publications in order are relayed as they come; a repeat (read from the stream and
    /// then published, say) is dropped.
    #[test]
    fn in_order_publications_are_relayed_once() {
        let mut feed = RoomFeed::start(Some("e".into()), 3);
        assert_eq!(publish(&mut feed, 4), [Step::Relay(vec![m(4)])]);
        assert_eq!(publish(&mut feed, 5), [Step::Relay(vec![m(5)])]);
        assert!(publish(&mut feed, 5).is_empty());
        assert!(publish(&mut feed, 2).is_empty());
        assert_eq!(feed.last(), 5);
    }

    /// A hole holds back what follows it and asks for the stream once; the fetched messages
    /// and then the held ones are relayed in order, each once.
    #[test]
    fn a_hole_is_filled_from_the_stream_before_relaying() {
        let mut feed = RoomFeed::start(Some("e".into()), 1);
        assert_eq!(publish(&mut feed, 4), [Step::Fetch { after: 1 }]);
        assert!(publish(&mut feed, 5).is_empty(), "held; the fetch is under way");
        let steps = feed.fetched(1, vec![m(2), m(3), m(4)], false);
        assert_eq!(steps, [Step::Relay(vec![m(2), m(3), m(4), m(5)])]);
        assert_eq!(publish(&mut feed, 6), [Step::Relay(vec![m(6)])]);
    }

    /// A full page asks for the next one; the hole closes across pages.
    #[test]
    fn fetching_goes_on_while_pages_are_full() {
        let mut feed = RoomFeed::start(Some("e".into()), 0);
        assert_eq!(publish(&mut feed, 5), [Step::Fetch { after: 0 }]);
        assert_eq!(
            feed.fetched(0, vec![m(1), m(2)], true),
            [Step::Relay(vec![m(1), m(2)]), Step::Fetch { after: 2 }]
        );
        assert_eq!(
            feed.fetched(2, vec![m(3), m(4), m(5)], false),
            [Step::Relay(vec![m(3), m(4), m(5)])]
        );
    }

    /// What was missed at the end shows no hole in later publications: the periodic look at
    /// the head finds it.
    #[test]
    fn the_head_finds_what_was_missed_at_the_end() {
        let mut feed = RoomFeed::start(Some("e".into()), 7);
        assert!(feed.checked(Some(("e".into(), 7))).is_empty());
        assert_eq!(feed.checked(Some(("e".into(), 9))), [Step::Fetch { after: 7 }]);
        assert!(feed.checked(Some(("e".into(), 9))).is_empty(), "one fetch at a time");
        assert_eq!(feed.fetched(7, vec![m(8), m(9)], false), [Step::Relay(vec![m(8), m(9)])]);
    }

    /// Ids past the stream's retention cannot be fetched: the loss is said once, and what
    /// follows is relayed.
    #[test]
    fn what_the_stream_no_longer_has_is_said_to_be_lost() {
        let mut feed = RoomFeed::start(Some("e".into()), 2);
        publish(&mut feed, 9);
        let steps = feed.fetched(2, vec![m(6), m(7), m(8), m(9)], false);
        assert_eq!(
            steps,
            [Step::Lost { from: 3, to: 5 }, Step::Relay(vec![m(6), m(7), m(8), m(9)])]
        );
        // Held past a hole the stream did not fill at all.
        let mut feed = RoomFeed::start(Some("e".into()), 2);
        publish(&mut feed, 9);
        let steps = feed.fetched(2, vec![], false);
        assert_eq!(steps, [Step::Lost { from: 3, to: 8 }, Step::Relay(vec![m(9)])]);
    }

    /// A held message inside a hole the stream no longer covers is relayed, not reported lost,
    /// and nothing stays held to ask for the stream again and again.
    #[test]
    fn what_is_held_inside_a_trimmed_hole_is_relayed() {
        let mut feed = RoomFeed::start(Some("e".into()), 1);
        assert_eq!(publish(&mut feed, 5), [Step::Fetch { after: 1 }]);
        let steps = feed.fetched(1, vec![m(7), m(8)], false);
        assert_eq!(
            steps,
            [
                Step::Lost { from: 2, to: 4 },
                Step::Relay(vec![m(5)]),
                Step::Lost { from: 6, to: 6 },
                Step::Relay(vec![m(7), m(8)]),
            ]
        );
        assert!(feed.checked(Some(("e".into(), 8))).is_empty(), "nothing more to fetch");
        assert_eq!(publish(&mut feed, 9), [Step::Relay(vec![m(9)])]);
    }

    /// Under the same epoch, a head below what was relayed, a room gone from Redis, or another
    /// message under an id already relayed, is another history (a failover to a replica that
    /// lacked the latest writes): the feed says so instead of dropping it as a repeat.
    #[test]
    fn another_history_under_the_same_epoch_diverges() {
        let mut feed = RoomFeed::start(Some("e".into()), 0);
        assert_eq!(publish(&mut feed, 1), [Step::Relay(vec![m(1)])]);
        assert_eq!(publish(&mut feed, 2), [Step::Relay(vec![m(2)])]);
        assert!(publish(&mut feed, 2).is_empty(), "the same message again is a repeat");
        let other = feed.published("e", 2, "not m2".into());
        assert_eq!(other, [Step::Diverged { epoch: "e".into() }], "another message under id 2");
        let mut feed = RoomFeed::start(Some("e".into()), 5);
        assert!(feed.checked(Some(("e".into(), 5))).is_empty());
        assert_eq!(feed.checked(Some(("e".into(), 3))), [Step::Diverged { epoch: "e".into() }]);
        assert_eq!(feed.checked(None), [Step::Diverged { epoch: "e".into() }], "the room is gone");
        assert!(RoomFeed::start(None, 0).checked(None).is_empty(), "never had a message");
    }

    /// Another epoch (Redis lost the room's data and counts from 1 again) starts the feed over
    /// and says so, whether a publication or the head shows it; a room with no message yet
    /// takes the first epoch it sees.
    #[test]
    fn a_new_epoch_resets() {
        let mut feed = RoomFeed::start(Some("old".into()), 40);
        let steps = feed.published("new", 1, "m1".into());
        assert_eq!(steps, [Step::Reset { epoch: "new".into() }, Step::Relay(vec![m(1)])]);
        assert_eq!(
            feed.checked(Some(("newer".into(), 3))),
            [Step::Reset { epoch: "newer".into() }, Step::Fetch { after: 0 }]
        );
        assert!(feed.fetched(40, vec![m(41)], false).is_empty(), "an answer from before the reset");
        let mut empty = RoomFeed::start(None, 0);
        assert_eq!(empty.published("e", 1, "m1".into()), [Step::Relay(vec![m(1)])]);
        assert!(empty.checked(Some(("e".into(), 1))).is_empty());
    }
}
