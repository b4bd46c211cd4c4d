//! Reassembly of messages split into continuation frames (RFC 6455 §5.4), with a size limit.
//!
//! actix-web-actors hands continuation frames to the session raw; this turns them back into
//! whole messages so a fragmented message is treated exactly like an unfragmented one.

use actix_http::ws::Item;
use actix_web::web::{Bytes, BytesMut};

/// A message rebuilt from its fragments.
#[derive(Debug, PartialEq, Eq)]
pub enum Whole {
    Text(Bytes),
    Binary(Bytes),
}

/// Why reassembly failed; either way the connection cannot continue.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    #[error("the fragmented message exceeds {limit} bytes")]
    TooBig { limit: usize },
    #[error("continuation frame without a first fragment, or a new message before the last ended")]
    OutOfSequence,
}

/// The fragments received so far of one message.
#[derive(Debug, Default)]
pub struct Reassembly {
    /// Boxed: every connection holds a `Reassembly`, few ever see a fragment.
    current: Option<Box<(bool, BytesMut)>>,
    /// The message under way was refused (a fragment of it broke the rate limit): its
    /// remaining fragments are checked for sequence and size, then dropped.
    dropping: bool,
}

impl Reassembly {
    /// Adds one continuation frame. Returns the whole message once its last fragment arrived.
    pub fn push(&mut self, item: Item, limit: usize) -> Result<Option<Whole>, FragmentError> {
        let (first, is_text, data, last) = match item {
            Item::FirstText(data) => (true, true, data, false),
            Item::FirstBinary(data) => (true, false, data, false),
            Item::Continue(data) => (false, false, data, false),
            Item::Last(data) => (false, false, data, true),
        };
        if first {
            if self.current.is_some() {
                return Err(FragmentError::OutOfSequence);
            }
            self.current = Some(Box::new((is_text, BytesMut::new())));
        }
        let Some((is_text, buffer)) = self.current.as_deref_mut() else {
            return Err(FragmentError::OutOfSequence);
        };
        if buffer.len() + data.len() > limit {
            self.current = None;
            return Err(FragmentError::TooBig { limit });
        }
        if !self.dropping {
            buffer.extend_from_slice(&data);
        }
        if !last {
            return Ok(None);
        }
        let is_text = *is_text;
        let Some((_, buffer)) = self.current.take().map(|current| *current) else {
            return Err(FragmentError::OutOfSequence);
        };
        if std::mem::take(&mut self.dropping) {
            return Ok(None);
        }
        let data = buffer.freeze();
        Ok(Some(if is_text { Whole::Text(data) } else { Whole::Binary(data) }))
    }
}

impl Reassembly {
    /// Drops the message under way: [`Reassembly::push`] keeps checking its fragments but
    /// returns nothing for it.
    pub fn drop_current(&mut self) {
        if let Some((_, buffer)) = self.current.as_deref_mut() {
            buffer.clear();
            self.dropping = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// Text split over three frames comes back whole, and the reassembler is ready again after.
    #[test]
    fn reassembles_text() {
        let mut r = Reassembly::default();
        assert_eq!(r.push(Item::FirstText(bytes("{\"type\":")), 100), Ok(None));
        assert_eq!(r.push(Item::Continue(bytes("\"send\",")), 100), Ok(None));
        assert_eq!(
            r.push(Item::Last(bytes("\"text\":\"hi\"}")), 100),
            Ok(Some(Whole::Text(bytes(r#"{"type":"send","text":"hi"}"#))))
        );
        assert_eq!(r.push(Item::FirstBinary(bytes("a")), 100), Ok(None));
        assert_eq!(r.push(Item::Last(bytes("b")), 100), Ok(Some(Whole::Binary(bytes("ab")))));
    }

    /// The limit applies to the sum of the fragments, not to each one.
    #[test]
    fn limit_counts_the_whole_message() {
        let mut r = Reassembly::default();
        assert_eq!(r.push(Item::FirstText(bytes("12345")), 8), Ok(None));
        assert_eq!(
            r.push(Item::Continue(bytes("6789")), 8),
            Err(FragmentError::TooBig { limit: 8 })
        );
    }

    /// A dropped message yields nothing and keeps nothing, and the next one is whole again.
    #[test]
    fn a_dropped_message_is_skipped() {
        let mut r = Reassembly::default();
        assert_eq!(r.push(Item::FirstText(bytes("{\"type\":")), 100), Ok(None));
        r.drop_current();
        assert_eq!(r.push(Item::Continue(bytes("xxxxxxxx")), 100), Ok(None));
        assert_eq!(r.current.as_deref().map(|(_, buffer)| buffer.len()), Some(0));
        assert_eq!(r.push(Item::Last(bytes("}")), 100), Ok(None));
        assert_eq!(r.push(Item::FirstText(bytes("a")), 100), Ok(None));
        assert_eq!(r.push(Item::Last(bytes("b")), 100), Ok(Some(Whole::Text(bytes("ab")))));
    }

    /// Fragments out of order are a protocol error rather than silently glued together.
    #[test]
    fn out_of_sequence_is_refused() {
        let mut r = Reassembly::default();
        assert_eq!(r.push(Item::Continue(bytes("x")), 8), Err(FragmentError::OutOfSequence));
        assert_eq!(r.push(Item::Last(bytes("x")), 8), Err(FragmentError::OutOfSequence));
        assert_eq!(r.push(Item::FirstText(bytes("x")), 8), Ok(None));
        assert_eq!(r.push(Item::FirstText(bytes("y")), 8), Err(FragmentError::OutOfSequence));
    }
}
