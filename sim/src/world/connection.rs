//! What the network model is made of: connections, their two ends, the packets they carry,
//! and which of a node's two links a packet is on. Plain data; `network.rs` moves it.

use p2p_core::ids::ConnId;
use p2p_core::wire::Message;

use crate::event_queue::Nanos;

/// Bytes a FIN takes on the wire (a bare TCP segment).
pub const FIN_SIZE_BYTES: u64 = 40;

/// What travels on a connection.
pub enum Packet {
    /// Boxed: packets sit in the event heap and the link queues, which move them around
    /// (one box for both kinds of data keeps a packet, and so an event, one word).
    Data(Box<Data>),
    /// The sender closed its end after everything queued before.
    Fin,
}

/// The bytes a packet carries: a Noise handshake message, or a machine's message (which
/// travels in records: see `world/secure.rs` for how its size is counted).
pub enum Data {
    Handshake(Vec<u8>),
    Message(Message),
}

/// Which of a node's two links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkSide {
    Upload,
    Download,
}

/// One end of a connection.
#[derive(Clone, Copy, Debug)]
pub struct End {
    pub node: usize,
    /// The incarnation of the node's machine that owns this end.
    pub incarnation: u32,
    /// The machine's id for it; `None` until the acceptor's machine accepted (after the
    /// handshake: an open end without an id is a handshake in progress).
    pub local: Option<ConnId>,
    pub open: bool,
}

/// A connection: end 0 dialled, end 1 accepted. Direction `d` carries data from end `d` to
/// end `1 - d`.
pub struct Conn {
    pub ends: [End; 2],
    /// When the last packet of each direction arrives at the receiver (for FIFO order).
    pub last_arrival: [Nanos; 2],
    /// `Piece`s queued on the sender's upload link and not yet out, per direction.
    pub pieces_queued: [u32; 2],
}

impl Conn {
    pub fn new(dialler: End, target: usize) -> Conn {
        Conn {
            ends: [
                dialler,
                End {
                    node: target,
                    incarnation: 0,
                    local: None,
                    open: false,
                },
            ],
            last_arrival: [0; 2],
            pieces_queued: [0; 2],
        }
    }
}
