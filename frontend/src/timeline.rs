//! How the message list is laid out: a separator where the (local) day changes, and
//! consecutive messages of one sender grouped under one name. Pure, so the rules are tested
//! on the host; the component supplies the local calendar day of a timestamp.

use crate::state::Entry;

/// Messages of one sender this close together (and on one day, with nothing between them) are
/// shown as a group: the name only on the first.
pub const GROUP_WINDOW_MS: u64 = 5 * 60 * 1000;

/// A local calendar day: year, month (0-11), day of the month.
pub type Day = (i32, u32, u32);

/// One row of the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row<'a> {
    /// The first row of a day: the day's label goes here.
    Day { day: Day, ts: u64 },
    /// An entry; `grouped` when it continues the previous message's group.
    Entry { entry: &'a Entry, grouped: bool },
}

/// The rows for `entries`, oldest first; `day_of` gives a timestamp's local day.
pub fn rows<'a>(
    entries: impl IntoIterator<Item = &'a Entry>,
    day_of: impl Fn(u64) -> Day,
) -> Vec<Row<'a>> {
    let mut rows = Vec::new();
    let mut previous: Option<(&Entry, Day)> = None;
    for entry in entries {
        let ts = timestamp(entry);
        let day = day_of(ts);
        if previous.is_none_or(|(_, last)| last != day) {
            rows.push(Row::Day { day, ts });
        }
        let grouped = match (previous, entry) {
            (Some((Entry::Message(before), last)), Entry::Message(message)) => {
                last == day
                    && before.from == message.from
                    && before.bot == message.bot
                    && before.signed_in == message.signed_in
                    && message.ts.saturating_sub(before.ts) < GROUP_WINDOW_MS
            }
            _ => false,
        };
        rows.push(Row::Entry { entry, grouped });
        previous = Some((entry, day));
    }
    rows
}

fn timestamp(entry: &Entry) -> u64 {
    match entry {
        Entry::Message(message) => message.ts,
        Entry::Notice { ts, .. } | Entry::Presence { ts, .. } => *ts,
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use protocol::ChatMessage;

    use super::*;

    const DAY_MS: u64 = 86_400_000;

    fn message(id: u64, from: &str, ts: u64) -> Entry {
        Entry::Message(Rc::new(ChatMessage {
            id,
            room: "r".into(),
            from: from.into(),
            text: "t".into(),
            ts,
            bot: false,
            signed_in: false,
            ..Default::default()
        }))
    }

    /// Days by UTC, for the test.
    fn utc_day(ts: u64) -> Day {
        (0, 0, u32::try_from(ts / DAY_MS).unwrap_or(u32::MAX))
    }

    /// What the rows say: "day" for a separator, the sender (with `+` when grouped) or
    /// "notice".
    fn shape(rows: &[Row<'_>]) -> Vec<String> {
        rows.iter()
            .map(|row| match row {
                Row::Day { .. } => "day".into(),
                Row::Entry { entry: Entry::Message(m), grouped } => {
                    format!("{}{}", if *grouped { "+" } else { "" }, m.from)
                }
                Row::Entry { .. } => "notice".into(),
            })
            .collect()
    }

    #[test]
    fn days_are_separated_and_one_senders_run_is_grouped() {
        let start = 10 * DAY_MS + 1_000;
        let entries = vec![
            message(1, "ann", start),
            message(2, "ann", start + 60_000),
            message(3, "bob", start + 120_000),
            message(4, "ann", start + 180_000),
            Entry::Notice { seq: 1, text: "x".into(), ts: start + 200_000 },
            message(5, "ann", start + 240_000),
            // Past the window: a new group.
            message(6, "ann", start + 240_000 + GROUP_WINDOW_MS),
            // The next day: a separator, and no group across it.
            message(7, "ann", start + DAY_MS),
        ];
        assert_eq!(
            shape(&rows(&entries, utc_day)),
            ["day", "ann", "+ann", "bob", "ann", "notice", "ann", "ann", "day", "ann"]
        );
    }

    #[test]
    fn a_bot_does_not_join_a_persons_group() {
        let mut bot = ChatMessage {
            id: 2,
            room: "r".into(),
            from: "ann".into(),
            text: "t".into(),
            ts: 2_000,
            bot: true,
            signed_in: false,
            ..Default::default()
        };
        let entries = vec![message(1, "ann", 1_000), Entry::Message(Rc::new(bot.clone()))];
        assert_eq!(shape(&rows(&entries, utc_day)), ["day", "ann", "ann"]);
        bot.id = 3;
        bot.ts = 3_000;
        let entries = vec![Entry::Message(Rc::new(bot.clone())), {
            bot.id = 4;
            Entry::Message(Rc::new(bot))
        }];
        assert_eq!(shape(&rows(&entries, utc_day)), ["day", "ann", "+ann"]);
    }
}
