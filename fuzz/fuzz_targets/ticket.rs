//! Untrusted tickets: arbitrary text parsed; a ticket that parses is valid, is recognised
//! as a ticket, prints shell-safe and parses back to itself. Then the same bytes as a
//! structured ticket: a valid one prints and parses back.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use p2p_core::Ticket;
use p2p_core::ticket::looks_like_ticket;

fn check_printed(ticket: &Ticket) {
    let text = ticket.to_string();
    assert!(
        text.bytes().all(|b| b.is_ascii_graphic()
            && !matches!(
                b,
                b'"' | b'\''
                    | b'`'
                    | b'$'
                    | b'\\'
                    | b'*'
                    | b'?'
                    | b'~'
                    | b'&'
                    | b'|'
                    | b';'
                    | b'<'
                    | b'>'
                    | b'('
                    | b')'
                    | b'!'
                    | b'#'
            )),
        "ticket text is not shell-safe: {text:?}"
    );
    let back: Ticket = text
        .parse()
        .unwrap_or_else(|e| panic!("{ticket:?} printed as {text:?} does not parse: {e}"));
    assert_eq!(&back, ticket);
    assert!(looks_like_ticket(&text));
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = text.parse::<Ticket>();
    if let Ok(ticket) = &parsed {
        ticket.validate().expect("parsed ticket does not validate");
        assert!(
            looks_like_ticket(&text),
            "parsed but not recognised: {text:?}"
        );
        check_printed(ticket);
    } else if let Err(e) = &parsed {
        let _ = e.to_string();
    }

    let mut u = Unstructured::new(data);
    let Ok(content_id) = u.arbitrary() else {
        return;
    };
    let Ok(secret) = u.arbitrary::<[u8; 32]>() else {
        return;
    };
    let Ok(name) = u.arbitrary::<String>() else {
        return;
    };
    let Ok(trackers) = u.arbitrary::<Vec<String>>() else {
        return;
    };
    let ticket = Ticket {
        content_id,
        secret: p2p_core::secure::SwarmSecret::from_bytes(secret),
        name,
        trackers,
    };
    if ticket.validate().is_ok() {
        check_printed(&ticket);
    }
});
