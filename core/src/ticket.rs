//! Tickets: the one string a person copies from `p2p share` and pastes into `p2p get`.
//!
//! ```text
//! p2p2:<content id, 64 hex>:<swarm secret, 64 hex>:<name, percent-encoded>:<tracker>,…
//! p2p2:3f5a…c9:8e01…7d:holiday%20photos.zip:10.0.0.5:7000,tracker.lan:7000
//! ```
//!
//! A ticket is a capability: its swarm secret lets whoever holds it join the swarm (see
//! `secure`). So a ticket's `Debug` shows the secret's tag, never the secret; its
//! `Display` is the whole ticket, for the user to copy.
//!
//! The version prefix lets another format be told apart and refused with a clear message:
//! `p2p1:` tickets (before swarms were private) carry no secret and cannot be used.
//! Everything but ASCII letters, digits and `-._` is percent-encoded (UTF-8 bytes, `%XX`),
//! in trackers `:` too is left as is: the result has no whitespace, quotes, globs, `~`, `$`
//! or other characters a shell would act on, so it survives being pasted unquoted. The
//! trackers come last, so their `:` needs no escaping; the name's `:` and `,` are escaped.

use std::fmt;
use std::str::FromStr;

use crate::ids::{ContentId, HexError};
use crate::manifest::NAME_LEN_MAX;
use crate::secure::SwarmSecret;

/// What every ticket of this format starts with.
pub(crate) const TICKET_PREFIX: &str = "p2p2:";
/// The version before swarm secrets, refused with a message of its own.
const OLD_TICKET_PREFIX: &str = "p2p1";
/// The prefix without its version digits, shared by every version of the format.
const TICKET_FAMILY: &str = "p2p";
/// Separates the fields after the prefix.
const FIELD_SEPARATOR: char = ':';
/// Separates tracker addresses.
const TRACKER_SEPARATOR: char = ',';
/// Most trackers in one ticket.
pub const TRACKERS_MAX: usize = 8;
/// Longest tracker address (`HOST:PORT`), in bytes: a DNS name's limit.
pub(crate) const TRACKER_ADDR_LEN_MAX: usize = 255;
/// Introduces a percent escape.
const ESCAPE: u8 = b'%';

/// A shareable reference to a file: what it is, what it is called, where to ask for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub content_id: ContentId,
    /// The swarm's secret: whoever holds the ticket may join the swarm.
    pub secret: SwarmSecret,
    /// The publisher's display name. Untrusted: sanitise it before using it as a path.
    pub name: String,
    /// Tracker addresses, each `HOST:PORT` (`[v6]:PORT` for IPv6). May be empty, in which
    /// case the getter must be told a tracker some other way.
    pub trackers: Vec<String>,
}

/// What is wrong with a ticket string. The messages are shown to the person who pasted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TicketError {
    MissingPrefix,
    UnsupportedVersion(String),
    /// A `p2p1:` ticket, from a p2p before private swarms: it has no secret.
    OldVersion,
    MissingField(&'static str),
    ContentId(HexError),
    Secret(HexError),
    BadEscape {
        field: &'static str,
        at: usize,
    },
    NotUtf8 {
        field: &'static str,
    },
    NameTooLong(usize),
    TooManyTrackers(usize),
    TrackerTooLong(usize),
    TrackerNotHostPort(String),
}

impl fmt::Display for TicketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TicketError::MissingPrefix => write!(f, "ticket must start with '{TICKET_PREFIX}'"),
            TicketError::UnsupportedVersion(prefix) => write!(
                f,
                "ticket version '{}' is not supported; this program reads '{TICKET_PREFIX}' tickets",
                prefix.escape_debug()
            ),
            TicketError::OldVersion => write!(
                f,
                "this '{OLD_TICKET_PREFIX}:' ticket is from an older p2p and carries no swarm \
                 secret, so it cannot join a swarm; ask the sender for a new ticket \
                 ('{TICKET_PREFIX}…', printed by `p2p share`)"
            ),
            TicketError::MissingField(field) => write!(
                f,
                "ticket ends before its {field}; expected \
                 '{TICKET_PREFIX}CONTENT_ID:SECRET:NAME:TRACKER,…'"
            ),
            TicketError::ContentId(e) => write!(f, "content id: {e}"),
            TicketError::Secret(e) => write!(f, "swarm secret: {e}"),
            TicketError::BadEscape { field, at } => write!(
                f,
                "{field}: '%' at character {} is not followed by two hex digits",
                at + 1
            ),
            TicketError::NotUtf8 { field } => {
                write!(f, "{field} is not valid UTF-8 once percent-decoded")
            }
            TicketError::NameTooLong(len) => {
                write!(f, "name is {len} bytes long, more than {NAME_LEN_MAX}")
            }
            TicketError::TooManyTrackers(count) => {
                write!(f, "ticket lists {count} trackers, more than {TRACKERS_MAX}")
            }
            TicketError::TrackerTooLong(len) => write!(
                f,
                "tracker address is {len} bytes long, more than {TRACKER_ADDR_LEN_MAX}"
            ),
            TicketError::TrackerNotHostPort(addr) => {
                write!(
                    f,
                    "tracker address '{}' is not HOST:PORT",
                    addr.escape_debug()
                )
            }
        }
    }
}

impl std::error::Error for TicketError {}

/// Field names used in error messages.
mod field {
    pub const SECRET: &str = "swarm secret";
    pub const NAME: &str = "name";
    pub const TRACKERS: &str = "tracker list";
    pub const TRACKER: &str = "tracker address";
}

impl Ticket {
    /// Checks the limits a parsed ticket is held to, so a ticket built in code prints as a
    /// string that parses back.
    pub fn validate(&self) -> Result<(), TicketError> {
        if self.name.len() > NAME_LEN_MAX {
            return Err(TicketError::NameTooLong(self.name.len()));
        }
        if self.trackers.len() > TRACKERS_MAX {
            return Err(TicketError::TooManyTrackers(self.trackers.len()));
        }
        self.trackers
            .iter()
            .try_for_each(|addr| check_tracker(addr))
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TICKET_PREFIX}{}{FIELD_SEPARATOR}{}{FIELD_SEPARATOR}",
            self.content_id,
            self.secret.to_hex()
        )?;
        percent_encode(f, &self.name, is_unreserved_in_name)?;
        write!(f, "{FIELD_SEPARATOR}")?;
        for (i, addr) in self.trackers.iter().enumerate() {
            if i > 0 {
                write!(f, "{TRACKER_SEPARATOR}")?;
            }
            percent_encode(f, addr, is_unreserved_in_tracker)?;
        }
        Ok(())
    }
}

impl FromStr for Ticket {
    type Err = TicketError;

    /// Parses a ticket. Whitespace around it (a pasted newline) is ignored.
    fn from_str(s: &str) -> Result<Ticket, TicketError> {
        let s = s.trim();
        let Some(rest) = s.strip_prefix(TICKET_PREFIX) else {
            return Err(match other_version_prefix(s) {
                Some(prefix) if prefix.eq_ignore_ascii_case(OLD_TICKET_PREFIX) => {
                    TicketError::OldVersion
                }
                Some(prefix) => TicketError::UnsupportedVersion(prefix.to_owned()),
                None => TicketError::MissingPrefix,
            });
        };
        let mut fields = rest.splitn(4, FIELD_SEPARATOR);
        let content_id_text = fields.next().unwrap_or("");
        let secret_text = fields
            .next()
            .ok_or(TicketError::MissingField(field::SECRET))?;
        let name_text = fields
            .next()
            .ok_or(TicketError::MissingField(field::NAME))?;
        let trackers_text = fields
            .next()
            .ok_or(TicketError::MissingField(field::TRACKERS))?;

        let content_id = content_id_text
            .parse::<ContentId>()
            .map_err(TicketError::ContentId)?;
        // Strictly 64 hex digits here (no surrounding spaces): a ticket is one word.
        let secret = crate::ids::from_hex::<32>(secret_text)
            .map(SwarmSecret::from_bytes)
            .map_err(TicketError::Secret)?;
        let name = percent_decode(name_text, field::NAME)?;
        if name.len() > NAME_LEN_MAX {
            return Err(TicketError::NameTooLong(name.len()));
        }
        let trackers = parse_trackers(trackers_text)?;
        Ok(Ticket {
            content_id,
            secret,
            name,
            trackers,
        })
    }
}

/// Whether `s` is meant as a ticket (of this or another version), as opposed to a URL, a
/// bare content id or a path: `p2p` followed by version digits and `:`, in any case.
pub fn looks_like_ticket(s: &str) -> bool {
    other_version_prefix(s.trim()).is_some()
}

/// The `p2pN:` prefix of `s` if it has one (any case, any digits), colon excluded.
fn other_version_prefix(s: &str) -> Option<&str> {
    let family = s.get(..TICKET_FAMILY.len())?;
    if !family.eq_ignore_ascii_case(TICKET_FAMILY) {
        return None;
    }
    let after_family = &s[TICKET_FAMILY.len()..];
    let digits = after_family.bytes().take_while(u8::is_ascii_digit).count();
    let separator_at = TICKET_FAMILY.len() + digits;
    (digits > 0 && s[separator_at..].starts_with(FIELD_SEPARATOR)).then(|| &s[..separator_at])
}

fn parse_trackers(text: &str) -> Result<Vec<String>, TicketError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let count = text.split(TRACKER_SEPARATOR).count();
    if count > TRACKERS_MAX {
        return Err(TicketError::TooManyTrackers(count));
    }
    text.split(TRACKER_SEPARATOR)
        .map(|encoded| {
            let addr = percent_decode(encoded, field::TRACKER)?;
            check_tracker(&addr)?;
            Ok(addr)
        })
        .collect()
}

/// Checks that `addr` is `HOST:PORT`: a DNS name or IPv4 address, or an IPv6 address in
/// brackets, and a port from 1 to 65535.
fn check_tracker(addr: &str) -> Result<(), TicketError> {
    if addr.len() > TRACKER_ADDR_LEN_MAX {
        return Err(TicketError::TrackerTooLong(addr.len()));
    }
    let not_host_port = || TicketError::TrackerNotHostPort(addr.to_owned());
    let (host, port) = addr.rsplit_once(':').ok_or_else(not_host_port)?;
    let port_ok = !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|port| port != 0);
    let host_ok = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.strip_suffix(']').is_some_and(|v6| {
            v6.contains(':')
                && v6
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }),
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        }
    };
    if port_ok && host_ok {
        Ok(())
    } else {
        Err(not_host_port())
    }
}

/// Bytes a name keeps as they are: unambiguous, and inert in every common shell.
fn is_unreserved_in_name(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_')
}

/// A tracker also keeps its `:`: trackers are the last field, so it cannot end one.
fn is_unreserved_in_tracker(byte: u8) -> bool {
    is_unreserved_in_name(byte) || byte == b':'
}

fn percent_encode(
    out: &mut fmt::Formatter<'_>,
    text: &str,
    is_unreserved: fn(u8) -> bool,
) -> fmt::Result {
    for byte in text.bytes() {
        if is_unreserved(byte) {
            write!(out, "{}", char::from(byte))?;
        } else {
            write!(out, "%{byte:02X}")?;
        }
    }
    Ok(())
}

/// Decodes `%XX` escapes; other characters stand for themselves, so a hand-written ticket
/// with a readable name still parses.
fn percent_decode(text: &str, field: &'static str) -> Result<String, TicketError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == ESCAPE {
            let escaped = bytes
                .get(i + 1..i + 3)
                .and_then(|pair| Some(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?))
                .ok_or_else(|| TicketError::BadEscape {
                    field,
                    at: text[..i].chars().count(),
                })?;
            out.push(escaped);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| TicketError::NotUtf8 { field })
}

fn hex_digit(c: u8) -> Option<u8> {
    char::from(c).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX_ID: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const HEX_SECRET: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f";

    fn sample() -> Ticket {
        Ticket {
            content_id: HEX_ID.parse().unwrap(),
            secret: HEX_SECRET.parse().unwrap(),
            name: "holiday photos: 2024/summer,final.zip".into(),
            trackers: vec!["10.0.0.5:7000".into(), "tracker.lan:7000".into()],
        }
    }

    fn error_of(ticket: &str) -> String {
        ticket.parse::<Ticket>().unwrap_err().to_string()
    }

    #[test]
    fn display_is_readable_and_shell_safe() {
        let text = sample().to_string();
        assert_eq!(
            text,
            format!(
                "p2p2:{HEX_ID}:{HEX_SECRET}:holiday%20photos%3A%202024%2Fsummer%2Cfinal.zip:\
                 10.0.0.5:7000,tracker.lan:7000"
            )
        );
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:,%".contains(&b))
        );
        assert_eq!(text.parse::<Ticket>(), Ok(sample()));
        assert!(looks_like_ticket(&text));
    }

    #[test]
    fn ipv6_trackers_and_no_trackers_round_trip() {
        let mut ticket = sample();
        ticket.trackers = vec!["[::1]:7000".into(), "[fe80::1]:1".into()];
        let text = ticket.to_string();
        assert!(!text.contains('['), "brackets are shell globs: {text}");
        assert_eq!(text.parse(), Ok(ticket.clone()));

        ticket.trackers.clear();
        assert!(ticket.to_string().ends_with(':'));
        assert_eq!(ticket.to_string().parse(), Ok(ticket));
    }

    #[test]
    fn surrounding_whitespace_and_readable_names_are_accepted() {
        let text = format!(
            "  p2p2:{}:{}:plain name.txt:h:1\n",
            HEX_ID.to_uppercase(),
            HEX_SECRET.to_uppercase()
        );
        let ticket: Ticket = text.parse().unwrap();
        assert_eq!(ticket.secret, sample().secret);
        assert_eq!(ticket.name, "plain name.txt");
        assert_eq!(ticket.trackers, vec!["h:1".to_owned()]);
    }

    #[test]
    fn looks_like_ticket_tells_tickets_from_other_arguments() {
        assert!(looks_like_ticket("p2p1:abc"));
        assert!(looks_like_ticket("P2P2:future"));
        assert!(!looks_like_ticket("https://example.com/f"));
        assert!(!looks_like_ticket(HEX_ID));
        assert!(!looks_like_ticket("p2p:x"));
        assert!(!looks_like_ticket("p2p1"));
        assert!(!looks_like_ticket("./p2p1:file"));
        assert!(!looks_like_ticket("p2"));
        assert!(!looks_like_ticket("p2é"));
    }

    #[test]
    fn each_error_says_what_is_wrong() {
        let id = format!("{HEX_ID}:{HEX_SECRET}");
        let old = "ticket is from an older p2p and carries no swarm secret, so it cannot \
                   join a swarm; ask the sender for a new ticket ('p2p2:…', printed by \
                   `p2p share`)";
        let cases: Vec<(String, String)> = vec![
            ("x".into(), "ticket must start with 'p2p2:'".into()),
            (
                format!("p2p3:{id}:n:h:1"),
                "ticket version 'p2p3' is not supported; this program reads 'p2p2:' tickets".into(),
            ),
            (
                format!("p2p1:{HEX_ID}:n:h:1"),
                format!("this 'p2p1:' {old}"),
            ),
            (
                format!("P2P1:{HEX_ID}:n:h:1"),
                format!("this 'p2p1:' {old}"),
            ),
            (
                format!("p2p2:{HEX_ID}"),
                "ticket ends before its swarm secret; expected \
                 'p2p2:CONTENT_ID:SECRET:NAME:TRACKER,…'"
                    .into(),
            ),
            (
                format!("p2p2:{id}"),
                "ticket ends before its name; expected 'p2p2:CONTENT_ID:SECRET:NAME:TRACKER,…'"
                    .into(),
            ),
            (
                format!("p2p2:{id}:name"),
                "ticket ends before its tracker list; expected \
                 'p2p2:CONTENT_ID:SECRET:NAME:TRACKER,…'"
                    .into(),
            ),
            (
                format!("p2p2:0123456789ab:{HEX_SECRET}:n:h:1"),
                "content id: expected 64 hex digits, found 12".into(),
            ),
            (
                format!("p2p2:{}:{HEX_SECRET}:n:h:1", "g".repeat(64)),
                "content id: character 1 is not a hex digit".into(),
            ),
            (
                format!("p2p2:{HEX_ID}:{}:n:h:1", &HEX_SECRET[1..]),
                "swarm secret: expected 64 hex digits, found 63".into(),
            ),
            (
                format!("p2p2:{HEX_ID}::n:h:1"),
                "swarm secret: expected 64 hex digits, found 0".into(),
            ),
            (
                format!("p2p2:{id}:ab%2:h:1"),
                "name: '%' at character 3 is not followed by two hex digits".into(),
            ),
            (
                format!("p2p2:{id}:%zz:h:1"),
                "name: '%' at character 1 is not followed by two hex digits".into(),
            ),
            (
                format!("p2p2:{id}:%FF:h:1"),
                "name is not valid UTF-8 once percent-decoded".into(),
            ),
            (
                format!("p2p2:{id}:{}:h:1", "n".repeat(NAME_LEN_MAX + 1)),
                format!("name is {} bytes long, more than 255", NAME_LEN_MAX + 1),
            ),
            (
                format!("p2p2:{id}:n:{}", ["h:1"; TRACKERS_MAX + 1].join(",")),
                "ticket lists 9 trackers, more than 8".into(),
            ),
            (
                format!("p2p2:{id}:n:{}:1", "h".repeat(TRACKER_ADDR_LEN_MAX)),
                "tracker address is 257 bytes long, more than 255".into(),
            ),
            (
                format!("p2p2:{id}:n:x"),
                "tracker address 'x' is not HOST:PORT".into(),
            ),
            (
                format!("p2p2:{id}:n:h:1,"),
                "tracker address '' is not HOST:PORT".into(),
            ),
            (
                format!("p2p2:{id}:n:h:0"),
                "tracker address 'h:0' is not HOST:PORT".into(),
            ),
            (
                format!("p2p2:{id}:n:h:65536"),
                "tracker address 'h:65536' is not HOST:PORT".into(),
            ),
            (
                format!("p2p2:{id}:n:h:+1"),
                "tracker address 'h:+1' is not HOST:PORT".into(),
            ),
            (
                format!("p2p2:{id}:n::::1"),
                "tracker address ':::1' is not HOST:PORT".into(),
            ),
            (
                format!("p2p2:{id}:n:bad%20host:1"),
                "tracker address 'bad host:1' is not HOST:PORT".into(),
            ),
            (
                format!("p2p2:{id}:n:%0A:1"),
                "tracker address '\\n:1' is not HOST:PORT".into(),
            ),
            (
                format!("p2p2:{id}:n:h:1%"),
                "tracker address: '%' at character 4 is not followed by two hex digits".into(),
            ),
        ];
        for (ticket, expected) in cases {
            assert_eq!(error_of(&ticket), expected, "{ticket}");
        }
    }

    #[test]
    fn validate_matches_what_parsing_accepts() {
        assert_eq!(sample().validate(), Ok(()));
        let mut bad = sample();
        bad.trackers.push("nope".into());
        assert_eq!(
            bad.validate(),
            Err(TicketError::TrackerNotHostPort("nope".into()))
        );
        bad.trackers = vec!["h:1".into(); TRACKERS_MAX + 1];
        assert_eq!(bad.validate(), Err(TicketError::TooManyTrackers(9)));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let ticket = sample();
        let debug = format!("{ticket:?}");
        assert!(!debug.to_lowercase().contains(HEX_SECRET), "{debug}");
        assert!(debug.contains("SwarmSecret(tag "), "{debug}");
        // Display is the whole ticket: it is what the user copies.
        assert!(ticket.to_string().contains(HEX_SECRET));
    }

    #[test]
    fn one_flipped_bit_of_the_secret_is_another_swarm() {
        let ticket = sample();
        let mut bytes = *ticket.secret.as_bytes();
        bytes[31] ^= 1;
        let mut other = ticket.clone();
        other.secret = SwarmSecret::from_bytes(bytes);
        let parsed: Ticket = other.to_string().parse().unwrap();
        assert_eq!(parsed, other);
        assert_ne!(parsed.secret.tag(), ticket.secret.tag());
    }

    fn tracker() -> impl Strategy<Value = String> {
        prop_oneof![
            ("[a-z0-9][a-z0-9.-]{0,30}", 1u16..).prop_map(|(host, port)| format!("{host}:{port}")),
            (any::<[u8; 4]>(), 1u16..)
                .prop_map(|(ip, port)| format!("{}.{}.{}.{}:{port}", ip[0], ip[1], ip[2], ip[3])),
            ("[0-9a-f:]{0,20}", 1u16..).prop_map(|(v6, port)| format!("[::{v6}]:{port}")),
        ]
    }

    /// Names rich in the characters the format treats specially.
    fn name() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just(":".to_owned()),
            Just("/".to_owned()),
            Just(" ".to_owned()),
            Just("%".to_owned()),
            Just(",".to_owned()),
            Just("%41".to_owned()),
            any::<char>().prop_map(String::from),
            "\\PC{0,8}",
        ];
        proptest::collection::vec(piece, 0..16).prop_map(|pieces| {
            let mut name = pieces.concat();
            let mut end = name.len().min(NAME_LEN_MAX);
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            name.truncate(end);
            name
        })
    }

    proptest! {
        #[test]
        fn tickets_round_trip(
            id in any::<[u8; 32]>(),
            secret in any::<[u8; 32]>(),
            name in prop_oneof![name(), any::<String>().prop_filter("fits", |n| n.len() <= NAME_LEN_MAX)],
            trackers in proptest::collection::vec(tracker(), 0..=TRACKERS_MAX),
        ) {
            let ticket = Ticket {
                content_id: ContentId(id),
                secret: SwarmSecret::from_bytes(secret),
                name,
                trackers,
            };
            prop_assert_eq!(ticket.validate(), Ok(()));
            let text = ticket.to_string();
            prop_assert!(
                text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:,%".contains(&b)),
                "{}", text
            );
            prop_assert!(looks_like_ticket(&text));
            prop_assert_eq!(text.parse::<Ticket>(), Ok(ticket));
        }

        #[test]
        fn parsing_any_string_never_panics(text in any::<String>()) {
            let _ = text.parse::<Ticket>();
            let with_prefix = format!("{TICKET_PREFIX}{text}");
            let _ = with_prefix.parse::<Ticket>();
            let _ = looks_like_ticket(&text);
        }
    }
}
