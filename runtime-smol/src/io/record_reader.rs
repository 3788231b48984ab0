//! The read side of a connection after its handshake: bytes from the socket into a
//! buffer of received records, opened into the frame decoder's buffer, or, for a block,
//! straight into the pooled buffer the block is stored from.
//!
//! Each byte of a block is copied once in user space: the cipher reads the record where
//! the socket put it and writes the plaintext where the block is kept (no buffer between,
//! and no buffer zeroed per record).

use async_net::TcpStream;
use bytes::{Buf, BytesMut};
use p2p_core::secure::TAG_LEN;
use p2p_core::secure::record::{record_len, record_plaintext_len};
use smol::io::AsyncReadExt;

use crate::io::secure::Opening;

/// The received-bytes buffer starts this small (most connections carry small messages)
/// and doubles while reads fill it, up to the max: a record (at most 64 KiB) always fits
/// beside a read of at least [`READ_LEN_MIN`].
const RAW_LEN_MIN: usize = 16 * 1024;
const RAW_LEN_MAX: usize = 128 * 1024;
/// Fewest bytes a read is offered; below, the partial record is moved to the front.
const READ_LEN_MIN: usize = 16 * 1024;

/// A socket's read half and the record layer's opening half: plaintext out.
pub struct RecordReader {
    stream: TcpStream,
    opening: Opening,
    /// Bytes received and not yet opened are `raw[start..end]`: at most one incomplete
    /// record once every complete one is opened.
    raw: Vec<u8>,
    start: usize,
    end: usize,
    /// The last read filled all the room it had: the next one gets a bigger buffer.
    last_read_filled: bool,
    /// Whether any plaintext (a whole record) has come out.
    got_plaintext: bool,
}

impl RecordReader {
    pub fn new(stream: TcpStream, mut opening: Opening) -> RecordReader {
        // Records that came with the handshake's last message (none from our handshake
        // driver, which reads message by message; kept for any other).
        let pending = match &mut opening {
            Opening::Sealed(opener) => opener.take_pending(),
            Opening::Plain => BytesMut::new(),
        };
        let mut raw = vec![0; RAW_LEN_MIN.max(pending.len() + READ_LEN_MIN)];
        raw[..pending.len()].copy_from_slice(&pending);
        RecordReader {
            stream,
            opening,
            end: pending.len(),
            raw,
            start: 0,
            last_read_filled: false,
            got_plaintext: false,
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Whether any plaintext has arrived: an outgoing connection closed before any was
    /// refused by the other side.
    pub fn got_plaintext(&self) -> bool {
        self.got_plaintext
    }

    /// Appends the plaintext of every record completed to `out` (maybe none, for part of
    /// a record): those already buffered (a block's frame may have left some), or else
    /// those of one more read from the socket. `Ok(false)` at the end of the stream; `Err`
    /// says why the connection must close.
    pub async fn fill(&mut self, out: &mut BytesMut) -> Result<bool, String> {
        let buffered = match self.opening {
            Opening::Plain => self.start < self.end,
            Opening::Sealed(_) => self.next_record_len()?.is_some(),
        };
        if !buffered && !self.read_more().await? {
            return Ok(false);
        }
        match &mut self.opening {
            Opening::Plain => {
                out.extend_from_slice(&self.raw[self.start..self.end]);
                self.start = self.end;
                self.got_plaintext = true;
            }
            Opening::Sealed(_) => {
                while let Some(len) = self.next_record_len()? {
                    let at = out.len();
                    out.resize(at + len, 0);
                    let opened = self.open_next(len, &mut out[at..]);
                    out.truncate(at + *opened.as_ref().unwrap_or(&0));
                    opened?;
                }
            }
        }
        Ok(true)
    }

    /// Fills `dst[..want]` with the next `want` bytes of plaintext; `dst` is [`TAG_LEN`]
    /// bytes longer, so that each record opens in place. Plaintext of the last record
    /// past `want` (a sender may cut its records anywhere) is appended to `spill`, which
    /// must be empty: the decoder's buffer, whose bytes come before these.
    pub async fn fill_exact(
        &mut self,
        dst: &mut [u8],
        want: usize,
        spill: &mut BytesMut,
    ) -> Result<(), String> {
        debug_assert!(dst.len() >= want + TAG_LEN && spill.is_empty());
        let mut filled = 0;
        while filled < want {
            if let Opening::Plain = self.opening {
                filled += self.take_plain(&mut dst[filled..want]).await?;
                continue;
            }
            let Some(len) = self.next_record_len()? else {
                if !self.read_more().await? {
                    return Err("end of stream".into());
                }
                continue;
            };
            if filled + record_plaintext_len(len) <= want {
                filled += self.open_next(len, &mut dst[filled..])?;
            } else {
                // The record runs past the frame: open it aside, keep the rest for later.
                spill.resize(len, 0);
                let opened = self.open_next(len, spill);
                spill.truncate(*opened.as_ref().unwrap_or(&0));
                opened?;
                let take = (want - filled).min(spill.len());
                dst[filled..filled + take].copy_from_slice(&spill[..take]);
                spill.advance(take);
                filled += take;
            }
        }
        Ok(())
    }

    /// Unsealed (benchmarks): bytes already buffered, or else one read straight into
    /// `dst`, as the connection code did before records existed.
    async fn take_plain(&mut self, dst: &mut [u8]) -> Result<usize, String> {
        self.got_plaintext = true;
        if self.start < self.end {
            let take = (self.end - self.start).min(dst.len());
            dst[..take].copy_from_slice(&self.raw[self.start..self.start + take]);
            self.start += take;
            return Ok(take);
        }
        match self.stream.read(dst).await {
            Ok(0) => Err("end of stream".into()),
            Ok(n) => Ok(n),
            Err(e) => Err(format!("read error: {e}")),
        }
    }

    /// The wire length of the next record when it is all buffered.
    fn next_record_len(&self) -> Result<Option<usize>, String> {
        let buffered = &self.raw[self.start..self.end];
        match record_len(buffered) {
            Ok(Some(len)) if len <= buffered.len() => Ok(Some(len)),
            Ok(_) => Ok(None),
            Err(e) => Err(format!("record refused: {e}")),
        }
    }

    /// Opens the next record (`len` bytes, all buffered) into `out`; returns its plaintext
    /// length.
    fn open_next(&mut self, len: usize, out: &mut [u8]) -> Result<usize, String> {
        let Opening::Sealed(opener) = &mut self.opening else {
            return Err("no record layer".into());
        };
        let record = &self.raw[self.start..self.start + len];
        let n = opener
            .open_record(record, out)
            .map_err(|e| format!("record refused: {e}"))?;
        self.start += len;
        self.got_plaintext = true;
        Ok(n)
    }

    /// Reads once from the socket into the buffer. `Ok(false)` at the end of the stream.
    async fn read_more(&mut self) -> Result<bool, String> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        if self.raw.len() - self.end < READ_LEN_MIN && self.start > 0 {
            self.raw.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        let cramped = self.raw.len() - self.end < READ_LEN_MIN;
        if (cramped || self.last_read_filled) && self.raw.len() < RAW_LEN_MAX {
            self.raw.resize((self.raw.len() * 2).min(RAW_LEN_MAX), 0);
        }
        let room = &mut self.raw[self.end..];
        let n = match self.stream.read(room).await {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(e) => return Err(format!("read error: {e}")),
        };
        self.last_read_filled = n == room.len();
        self.end += n;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use async_net::TcpListener;
    use p2p_core::secure::{Keyring, StaticKey, SwarmSecret};
    use smol::future;
    use smol::io::AsyncWriteExt;

    use super::*;
    use crate::io::secure::{self, Sealing};

    /// A real session over loopback whose sender cuts records where it pleases and
    /// trickles them: a frame's bytes come out exactly, and the plaintext of a record that
    /// runs past the frame goes back to the decoder's buffer, then the rest follows. Both
    /// ends run on the test's thread (no executor of its own to wait for).
    #[test]
    fn a_record_running_past_a_frame_goes_back_to_the_decoder() {
        smol::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let payload: Vec<u8> = (0..150_000u32).map(|n| (n % 251) as u8).collect();
            let sending = async {
                let mut stream = async_net::TcpStream::connect(addr).await.unwrap();
                let key = StaticKey::from_private([1; 32]);
                let secret = SwarmSecret::from_bytes([3; 32]);
                let records = secure::initiate(&mut stream, &key, &secret, false).await;
                let Sealing::Sealed(mut sealer) = records.unwrap().sealing else {
                    panic!("sealed records");
                };
                let mut wire = BytesMut::new();
                sealer.seal(&payload, &mut wire).unwrap();
                for piece in wire.chunks(4093) {
                    stream.write_all(piece).await.unwrap();
                    stream.flush().await.unwrap();
                }
                stream
            };
            // 100,000 bytes end inside the second record (records carry 65,519).
            let want = 100_000;
            let receiving = async {
                let (mut stream, _) = listener.accept().await.unwrap();
                let key = StaticKey::from_private([2; 32]);
                let keyring = Keyring::of(SwarmSecret::from_bytes([3; 32]));
                let records = secure::respond(&mut stream, &key, &keyring, false).await;
                let mut reader = RecordReader::new(stream, records.unwrap().opening);
                let mut frame = vec![0u8; want + TAG_LEN];
                let mut decoder = BytesMut::new();
                reader
                    .fill_exact(&mut frame, want, &mut decoder)
                    .await
                    .unwrap();
                assert_eq!(&frame[..want], &payload[..want]);
                assert_eq!(&decoder[..], &payload[want..2 * 65_519]);
                while decoder.len() < payload.len() - want {
                    assert!(reader.fill(&mut decoder).await.unwrap());
                }
                (reader, decoder)
            };
            // A reader that waits for bytes it already has would wait forever: bounded.
            let both = future::zip(sending, receiving);
            let stuck = async {
                smol::Timer::after(std::time::Duration::from_secs(30)).await;
                panic!("the reader waited 30 s for records it already had");
            };
            let (stream, (mut reader, mut decoder)) = future::or(both, stuck).await;
            assert_eq!(&decoder[..], &payload[want..]);
            assert!(reader.got_plaintext());
            drop(stream);
            assert!(!reader.fill(&mut decoder).await.unwrap(), "end of stream");
        });
    }
}
