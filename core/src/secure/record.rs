//! The record layer: a byte stream cut into AEAD records, `u16 length | ciphertext`.
//!
//! The sealer and the opener are separate halves (the runtime writes and reads a socket in
//! different tasks); each counts its own records, and that count is the nonce, so a
//! replayed, dropped or reordered record fails to authenticate.
//!
//! Two ways in: `seal`/`open` work on growing buffers and a stream cut anywhere (tests,
//! fuzzing, simple drivers); `seal_into`/`record_len`/`open_record` work record by record
//! on slices the caller owns, so a driver can open a block's records straight into the
//! buffer the block is stored from, with no copy and no zeroing between.

use std::sync::Arc;

use bytes::BytesMut;
use snow::StatelessTransportState;

use super::{LEN_PREFIX, RECORD_PLAINTEXT_MAX, SecureError, TAG_LEN};

/// Encrypts what one side sends.
pub struct Sealer {
    transport: Arc<StatelessTransportState>,
    nonce: u64,
}

impl Sealer {
    pub(crate) fn new(transport: Arc<StatelessTransportState>) -> Sealer {
        Sealer {
            transport,
            nonce: 0,
        }
    }

    /// Appends `plaintext` to `out` as records of at most [`RECORD_PLAINTEXT_MAX`] bytes
    /// each (none for an empty plaintext).
    pub fn seal(&mut self, plaintext: &[u8], out: &mut BytesMut) -> Result<(), SecureError> {
        let start = out.len();
        out.resize(start + sealed_len(plaintext.len()), 0);
        let written = self.seal_into(plaintext, &mut out[start..]);
        out.truncate(start + *written.as_ref().unwrap_or(&0));
        written.map(|_| ())
    }

    /// Writes `plaintext` as records at the start of `out`, which holds at least
    /// [`sealed_len`] of it; returns the bytes written. A buffer reused for every write
    /// this way is never zeroed again.
    pub fn seal_into(&mut self, plaintext: &[u8], out: &mut [u8]) -> Result<usize, SecureError> {
        if out.len() < sealed_len(plaintext.len()) {
            return Err(SecureError::BufferTooSmall);
        }
        let mut at = 0;
        for piece in plaintext.chunks(RECORD_PLAINTEXT_MAX) {
            let len = piece.len() + TAG_LEN;
            // Cannot fail: pieces are at most RECORD_PLAINTEXT_MAX, so len ≤ u16::MAX.
            let prefix = u16::try_from(len).expect("a record fits a u16");
            out[at..at + LEN_PREFIX].copy_from_slice(&prefix.to_be_bytes());
            at += LEN_PREFIX;
            let nonce = self.next_nonce()?;
            at += self
                .transport
                .write_message(nonce, piece, &mut out[at..at + len])?;
        }
        Ok(at)
    }

    fn next_nonce(&mut self) -> Result<u64, SecureError> {
        let nonce = self.nonce;
        self.nonce = nonce.checked_add(1).ok_or(SecureError::Exhausted)?;
        Ok(nonce)
    }
}

/// Bytes on the wire for `plaintext_len` bytes sealed.
pub fn sealed_len(plaintext_len: usize) -> usize {
    plaintext_len + plaintext_len.div_ceil(RECORD_PLAINTEXT_MAX) * (LEN_PREFIX + TAG_LEN)
}

/// The length on the wire (prefix included) of the record that starts `bytes`, once its
/// prefix has arrived; an error for a length no sealer writes.
pub fn record_len(bytes: &[u8]) -> Result<Option<usize>, SecureError> {
    let Some(prefix) = bytes.get(..LEN_PREFIX) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
    if len < TAG_LEN {
        return Err(SecureError::Decrypt);
    }
    Ok(Some(LEN_PREFIX + len))
}

/// Plaintext bytes of a record [`record_len`] bytes long on the wire.
pub fn record_plaintext_len(record_len: usize) -> usize {
    record_len.saturating_sub(LEN_PREFIX + TAG_LEN)
}

/// Decrypts what the other side sent.
pub struct Opener {
    transport: Arc<StatelessTransportState>,
    nonce: u64,
    /// For [`Opener::open`]: the start of a record not yet complete (less than a record).
    pending: BytesMut,
}

impl Opener {
    pub(crate) fn new(transport: Arc<StatelessTransportState>, pending: BytesMut) -> Opener {
        Opener {
            transport,
            nonce: 0,
            pending,
        }
    }

    /// Bytes held back as the start of an incomplete record.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Takes the bytes held back (received with the handshake's last message, or by
    /// [`Opener::open`]), for a driver that goes on record by record.
    pub fn take_pending(&mut self) -> BytesMut {
        std::mem::take(&mut self.pending)
    }

    /// Decrypts every complete record of what was received so far (`input` after what came
    /// before) and appends the plaintext to `out`; keeps an incomplete last record for the
    /// next call. An error means the connection must be closed: nothing after a record
    /// that fails is ever opened.
    pub fn open(&mut self, mut input: &[u8], out: &mut BytesMut) -> Result<(), SecureError> {
        if !self.pending.is_empty() {
            // Complete the held-back record, its prefix first, with as few bytes of
            // `input` as it needs (the rest is opened where it lies).
            if self.pending.len() < LEN_PREFIX {
                let take = (LEN_PREFIX - self.pending.len()).min(input.len());
                self.pending.extend_from_slice(&input[..take]);
                input = &input[take..];
            }
            let Some(len) = record_len(&self.pending)? else {
                return Ok(());
            };
            let take = len.saturating_sub(self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending.len() < len {
                return Ok(());
            }
            let record = std::mem::take(&mut self.pending);
            self.open_appending(&record, out)?;
        }
        let mut at = 0;
        while let Some(len) = record_len(&input[at..])? {
            if input.len() - at < len {
                break;
            }
            self.open_appending(&input[at..at + len], out)?;
            at += len;
        }
        self.pending.extend_from_slice(&input[at..]);
        Ok(())
    }

    fn open_appending(&mut self, record: &[u8], out: &mut BytesMut) -> Result<(), SecureError> {
        let start = out.len();
        out.resize(start + record.len(), 0);
        let opened = self.open_record(record, &mut out[start..]);
        out.truncate(start + *opened.as_ref().unwrap_or(&0));
        opened.map(|_| ())
    }

    /// Decrypts one whole record (its prefix included, [`record_len`] bytes) into the start
    /// of `out`; returns the plaintext's length. `out` must have room for the plaintext
    /// and [`TAG_LEN`] bytes more: the cipher opens the record in place there.
    pub fn open_record(&mut self, record: &[u8], out: &mut [u8]) -> Result<usize, SecureError> {
        if record_len(record)? != Some(record.len()) {
            return Err(SecureError::Decrypt);
        }
        let ciphertext = &record[LEN_PREFIX..];
        if out.len() < ciphertext.len() {
            return Err(SecureError::BufferTooSmall);
        }
        let nonce = self.nonce;
        self.nonce = nonce.checked_add(1).ok_or(SecureError::Exhausted)?;
        Ok(self.transport.read_message(nonce, ciphertext, out)?)
    }
}
