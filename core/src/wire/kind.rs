//! The one table of message kinds: each `Message` variant's name and its kind byte on the
//! wire. The codec, the tracker's error texts, the simulator's per-kind counts and the test
//! kit's samples all read it, so a new message is added here once.
//!
//! The bytes are the protocol: changing one breaks every deployed peer (and the simulator's
//! pinned trace digests, which hash them).

use super::Message;

/// Declares `MessageKind` from `Variant = byte` rows, and everything derived from the rows:
/// the list of kinds, the name, the byte and back, and `Message::kind`. A macro so the table
/// is written once; the names are the variant names by construction (`stringify!`).
macro_rules! message_kinds {
    ($($variant:ident = $byte:literal,)+) => {
        /// The kind of a message: which `Message` variant it is, without its fields.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u8)]
        pub enum MessageKind {
            $($variant = $byte,)+
        }

        impl MessageKind {
            /// Every kind, in the order of the table (ascending bytes).
            pub const ALL: &'static [MessageKind] = &[$(MessageKind::$variant,)+];

            /// The kind's name: the `Message` variant's name (`"Hello"`, `"Piece"`, ...).
            pub const fn name(self) -> &'static str {
                match self {
                    $(MessageKind::$variant => stringify!($variant),)+
                }
            }

            /// The byte that precedes the payload in a frame.
            pub const fn byte(self) -> u8 {
                self as u8
            }

            /// The kind a frame's kind byte names; `None` for a byte no message uses.
            pub(crate) const fn from_byte(byte: u8) -> Option<MessageKind> {
                match byte {
                    $($byte => Some(MessageKind::$variant),)+
                    _ => None,
                }
            }
        }

        impl Message {
            /// Which kind of message this is.
            pub fn kind(&self) -> MessageKind {
                // `Variant { .. }` also matches unit variants such as `Goodbye`.
                match self {
                    $(Message::$variant { .. } => MessageKind::$variant,)+
                }
            }
        }
    };
}

message_kinds! {
    // handshake, both peer↔tracker and peer↔peer
    Hello = 1,
    Welcome = 2,
    Error = 3,
    Goodbye = 4,
    Heartbeat = 5,
    // peer → tracker
    Announce = 10,
    Have = 11,
    Withdraw = 12,
    ListFiles = 13,
    Locate = 14,
    ListPeers = 15,
    GetManifest = 16,
    // tracker → peer
    FileList = 20,
    Located = 21,
    PeerList = 22,
    ManifestReply = 23,
    NotFound = 24,
    // peer ↔ peer
    Interested = 30,
    Bitfield = 31,
    Request = 32,
    Piece = 33,
    Reject = 34,
    Cancel = 35,
    Ping = 36,
    Pong = 37,
    PeerExchange = 38,
    // cooperative origin download
    OfferJob = 50,
    TakeWork = 51,
    AssignRange = 52,
    DeliverRange = 53,
    RangeFailed = 54,
    NoWork = 55,
    EndJob = 56,
    CancelRange = 57,
    // origin keys (peer ↔ tracker)
    SetOrigin = 60,
    FindOrigin = 61,
    OriginResult = 62,
}

impl std::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_names_one_kind_and_back() {
        let mut seen = std::collections::BTreeSet::new();
        for &kind in MessageKind::ALL {
            assert!(
                seen.insert(kind.byte()),
                "{kind} reuses byte {}",
                kind.byte()
            );
            assert_eq!(MessageKind::from_byte(kind.byte()), Some(kind));
        }
        assert_eq!(MessageKind::from_byte(0), None);
    }
}
