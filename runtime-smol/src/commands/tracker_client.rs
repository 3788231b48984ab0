//! One-shot tracker clients for `p2p ls`, `p2p peers` and resolving a file by name: connect,
//! run the handshake in the swarm of the secret given, say hello without a listen address
//! (we serve nothing), ask one question, read the answer. Any member of the swarm answers
//! these questions too, from what it knows (`p2p_core::peer`'s `answers`).

use std::time::Duration;

use anyhow::{Context, bail};
use async_net::TcpStream;
use bytes::BytesMut;
use p2p_core::secure::SwarmSecret;
use p2p_core::wire::{FileEntry, PROTOCOL_VERSION, PeerEntry};
use p2p_core::{ContentId, FrameDecoder, Manifest, Message};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Timer, future};

use crate::io::keys;
use crate::io::secure::{self, HandshakeError, Opening, Records, Sealing};

/// How long a whole query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Most messages passed over before the answer: a peer's greeting is a few per content it
/// downloads and per job it offers.
const GREETINGS_MAX: usize = 256;

/// Whether `message` can answer a question (or refuse to).
fn is_answer(message: &Message) -> bool {
    matches!(
        message,
        Message::FileList { .. }
            | Message::Located { .. }
            | Message::PeerList { .. }
            | Message::ManifestReply { .. }
            | Message::NotFound { .. }
            | Message::OriginResult { .. }
            | Message::Error { .. }
            | Message::Goodbye
    )
}

/// Where to dial a peer listed at `listed` by the peer at `asked`: a peer answering for
/// the tracker lists itself as it listens, on every interface (`[::]:PORT`), which names
/// the host it was reached at.
fn as_dialled(listed: &str, asked: &str) -> String {
    let (Some((host, port)), Some((asked_host, _))) =
        (listed.rsplit_once(':'), asked.rsplit_once(':'))
    else {
        return listed.to_string();
    };
    if matches!(host, "0.0.0.0" | "[::]") {
        format!("{asked_host}:{port}")
    } else {
        listed.to_string()
    }
}

/// The files the tracker lists.
pub async fn list_files(tracker: &str, secret: &SwarmSecret) -> anyhow::Result<Vec<FileEntry>> {
    match query(tracker, secret, Message::ListFiles).await? {
        Message::FileList { files } => Ok(files),
        other => bail!(
            "tracker {tracker} answered ListFiles with {}",
            describe(&other)
        ),
    }
}

/// The peers the tracker knows.
pub async fn list_peers(tracker: &str, secret: &SwarmSecret) -> anyhow::Result<Vec<PeerEntry>> {
    match query(tracker, secret, Message::ListPeers).await? {
        Message::PeerList { mut peers } => {
            for peer in &mut peers {
                peer.listen_addr = as_dialled(&peer.listen_addr, tracker);
            }
            Ok(peers)
        }
        other => bail!(
            "tracker {tracker} answered ListPeers with {}",
            describe(&other)
        ),
    }
}

/// The content id of the complete file the swarm knows as `origin` ("URL validator"), if any.
pub async fn find_origin(
    tracker: &str,
    secret: &SwarmSecret,
    origin: &str,
) -> anyhow::Result<Option<ContentId>> {
    let request = Message::FindOrigin {
        origin: origin.to_string(),
    };
    match query(tracker, secret, request).await? {
        Message::OriginResult { content_id, .. } => Ok(content_id),
        other => bail!(
            "tracker {tracker} answered FindOrigin with {}",
            describe(&other)
        ),
    }
}

/// The manifest of `content_id` the tracker holds, checked against the id.
pub async fn get_manifest(
    tracker: &str,
    secret: &SwarmSecret,
    content_id: ContentId,
) -> anyhow::Result<Manifest> {
    match query(tracker, secret, Message::GetManifest { content_id }).await? {
        Message::ManifestReply { manifest } => {
            manifest.verify(content_id).map_err(|e| {
                anyhow::anyhow!("tracker {tracker} sent a manifest that is not {content_id}'s: {e}")
            })?;
            Ok(manifest)
        }
        other => bail!(
            "tracker {tracker} answered GetManifest with {}",
            describe(&other)
        ),
    }
}

async fn query(tracker: &str, secret: &SwarmSecret, request: Message) -> anyhow::Result<Message> {
    let work = async {
        let mut stream = TcpStream::connect(tracker)
            .await
            .with_context(|| format!("cannot connect to the tracker at {tracker}"))?;
        stream.set_nodelay(true)?;
        let key = keys::new_static_key();
        let plaintext = secure::plaintext_records();
        let Records {
            mut sealing,
            mut opening,
            ..
        } = match secure::initiate(&mut stream, &key, secret, plaintext).await {
            Ok(records) => records,
            Err(HandshakeError::TimedOut) => bail!(
                "the tracker at {tracker} did not finish the handshake within {} s",
                p2p_core::secure::HANDSHAKE_TIMEOUT.as_secs()
            ),
            Err(e) => {
                tracing::debug!("{e}");
                bail!("{}", refused_message(tracker, "the secret file's"))
            }
        };
        let mut conn = Conn {
            stream: &mut stream,
            sealing: &mut sealing,
            opening: &mut opening,
            decoder: FrameDecoder::new(),
        };
        let hello = Message::Hello {
            version: PROTOCOL_VERSION,
            peer_id: key.peer_id(),
            listen_addr: String::new(),
            swarm: secret.tag().name(),
        };
        conn.send(&hello).await?;
        match conn.next_message().await {
            Ok(Message::Welcome { .. }) => {}
            Ok(other) => bail!(
                "tracker {tracker} refused the session: {}",
                describe(&other)
            ),
            Err(_) if !conn.got_any() => {
                bail!("{}", refused_message(tracker, "the secret file's"))
            }
            Err(e) => return Err(e),
        }
        conn.send(&request).await?;
        // A peer answering for the tracker (issue 15) greets a new connection first (its
        // interests, jobs on offer, a ping): passed over, within a bound.
        let mut passed_over = 0;
        let answer = loop {
            let message = conn.next_message().await?;
            if is_answer(&message) || passed_over == GREETINGS_MAX {
                break message;
            }
            passed_over += 1;
        };
        let _ = conn.send(&Message::Goodbye).await;
        Ok(answer)
    };
    let timeout = async {
        Timer::after(QUERY_TIMEOUT).await;
        bail!(
            "tracker {tracker} did not answer within {} s",
            QUERY_TIMEOUT.as_secs()
        )
    };
    future::or(work, timeout).await
}

/// What to tell a user whose swarm secret a tracker refused (`whose`: where the secret
/// came from, e.g. "the ticket's").
pub fn refused_message(tracker: &str, whose: &str) -> String {
    format!(
        "the tracker at {tracker} refused the handshake: {whose} swarm secret is not one it \
         serves (or it is not a p2p tracker of this version); ask the sender for a new ticket, \
         or check the secret file"
    )
}

/// A session with a tracker: frames sealed into records and opened back.
struct Conn<'a> {
    stream: &'a mut TcpStream,
    sealing: &'a mut Sealing,
    opening: &'a mut Opening,
    decoder: FrameDecoder,
}

impl Conn<'_> {
    async fn send(&mut self, message: &Message) -> anyhow::Result<()> {
        let mut wire = BytesMut::new();
        self.sealing
            .seal(&message.to_frame(), &mut wire)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        self.stream.write_all(&wire).await?;
        Ok(())
    }

    /// Whether any plaintext has arrived (a refusal closes before any).
    fn got_any(&self) -> bool {
        self.decoder.buffered_len() > 0
    }

    /// The next message other than a heartbeat.
    async fn next_message(&mut self) -> anyhow::Result<Message> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while let Some(message) = self.decoder.next_message()? {
                if !matches!(message, Message::Heartbeat { .. }) {
                    return Ok(message);
                }
            }
            let n = self.stream.read(&mut buf).await?;
            if n == 0 {
                bail!("the tracker closed the connection");
            }
            self.opening
                .open(&buf[..n], self.decoder.buffer_mut())
                .map_err(|e| anyhow::anyhow!("the tracker's record was refused: {e}"))?;
        }
    }
}

fn describe(message: &Message) -> String {
    match message {
        Message::Error { code, message } => format!("error {code}: {message}"),
        other => format!("an unexpected {other:?}")
            .chars()
            .take(120)
            .collect(),
    }
}
