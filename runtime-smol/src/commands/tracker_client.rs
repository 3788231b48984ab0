//! One-shot tracker clients for `p2p ls`, `p2p peers` and resolving a file by name: connect,
//! say hello without a listen address (we serve nothing), ask one question, read the answer.

use std::time::Duration;

use anyhow::{Context, bail};
use async_net::TcpStream;
use p2p_core::wire::{FileEntry, PROTOCOL_VERSION, PeerEntry};
use p2p_core::{ContentId, FrameDecoder, Message, PeerId};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Timer, future};

use crate::io::clock;

/// How long a whole query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The files the tracker lists.
pub async fn list_files(tracker: &str, swarm: &str) -> anyhow::Result<Vec<FileEntry>> {
    match query(tracker, swarm, Message::ListFiles).await? {
        Message::FileList { files } => Ok(files),
        other => bail!(
            "tracker {tracker} answered ListFiles with {}",
            describe(&other)
        ),
    }
}

/// The peers the tracker knows.
pub async fn list_peers(tracker: &str, swarm: &str) -> anyhow::Result<Vec<PeerEntry>> {
    match query(tracker, swarm, Message::ListPeers).await? {
        Message::PeerList { peers } => Ok(peers),
        other => bail!(
            "tracker {tracker} answered ListPeers with {}",
            describe(&other)
        ),
    }
}

/// The content id of the complete file the swarm knows as `origin` ("URL validator"), if any.
pub async fn find_origin(
    tracker: &str,
    swarm: &str,
    origin: &str,
) -> anyhow::Result<Option<ContentId>> {
    let request = Message::FindOrigin {
        origin: origin.to_string(),
    };
    match query(tracker, swarm, request).await? {
        Message::OriginResult { content_id, .. } => Ok(content_id),
        other => bail!(
            "tracker {tracker} answered FindOrigin with {}",
            describe(&other)
        ),
    }
}

async fn query(tracker: &str, swarm: &str, request: Message) -> anyhow::Result<Message> {
    let work = async {
        let mut stream = TcpStream::connect(tracker)
            .await
            .with_context(|| format!("cannot connect to the tracker at {tracker}"))?;
        stream.set_nodelay(true)?;
        let hello = Message::Hello {
            version: PROTOCOL_VERSION,
            peer_id: PeerId(clock::random_u64()),
            listen_addr: String::new(),
            swarm: swarm.to_string(),
        };
        stream.write_all(&hello.to_frame()).await?;
        let mut decoder = FrameDecoder::new();
        match next_message(&mut stream, &mut decoder).await? {
            Message::Welcome { .. } => {}
            other => bail!(
                "tracker {tracker} refused the session: {}",
                describe(&other)
            ),
        }
        stream.write_all(&request.to_frame()).await?;
        let answer = next_message(&mut stream, &mut decoder).await?;
        let _ = stream.write_all(&Message::Goodbye.to_frame()).await;
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

/// The next message other than a heartbeat.
async fn next_message(
    stream: &mut TcpStream,
    decoder: &mut FrameDecoder,
) -> anyhow::Result<Message> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some(message) = decoder.next_message()? {
            if !matches!(message, Message::Heartbeat { .. }) {
                return Ok(message);
            }
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            bail!("the tracker closed the connection");
        }
        decoder.feed(&buf[..n]);
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
