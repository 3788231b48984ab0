//! The record layer: a byte stream cut into AEAD records, `u16 length | ciphertext`.
//!
//! The sealer and the opener are separate halves (the runtime writes and reads a socket in
//! different tasks); each counts its own records, and that count is the nonce, so a
//! replayed, dropped or reordered record fails to authenticate.

use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};
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
        out.reserve(sealed_len(plaintext.len()));
        for piece in plaintext.chunks(RECORD_PLAINTEXT_MAX) {
            let len = piece.len() + TAG_LEN;
            // Cannot fail: pieces are at most RECORD_PLAINTEXT_MAX, so len ≤ u16::MAX.
            out.put_u16(u16::try_from(len).expect("a record fits a u16"));
            let start = out.len();
            out.resize(start + len, 0);
            let nonce = self.next_nonce()?;
            self.transport
                .write_message(nonce, piece, &mut out[start..])?;
        }
        Ok(())
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

/// Decrypts what the other side sent.
pub struct Opener {
    transport: Arc<StatelessTransportState>,
    nonce: u64,
    /// The start of a record not yet complete: less than one record's worth.
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

    /// Decrypts every complete record of what was received so far (`input` after what came
    /// before) and appends the plaintext to `out`; keeps an incomplete last record for the
    /// next call. An error means the connection must be closed: nothing after a record
    /// that fails is ever opened.
    pub fn open(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), SecureError> {
        if self.pending.is_empty() {
            let used = self.open_records(input, out)?;
            self.pending.extend_from_slice(&input[used..]);
        } else {
            self.pending.extend_from_slice(input);
            let pending = std::mem::take(&mut self.pending);
            let used = self.open_records(&pending, out)?;
            self.pending = pending;
            self.pending.advance(used);
        }
        Ok(())
    }

    /// Opens the complete records at the start of `bytes`; returns how many bytes they took.
    fn open_records(&mut self, bytes: &[u8], out: &mut BytesMut) -> Result<usize, SecureError> {
        let mut at = 0;
        while bytes.len() - at >= LEN_PREFIX {
            let len = usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
            if len < TAG_LEN {
                return Err(SecureError::Decrypt);
            }
            let end = at + LEN_PREFIX + len;
            if bytes.len() < end {
                break;
            }
            let start = out.len();
            out.resize(start + len - TAG_LEN, 0);
            let nonce = self.nonce;
            self.nonce = nonce.checked_add(1).ok_or(SecureError::Exhausted)?;
            let written =
                self.transport
                    .read_message(nonce, &bytes[at + LEN_PREFIX..end], &mut out[start..]);
            match written {
                Ok(n) => out.truncate(start + n),
                Err(e) => {
                    out.truncate(start);
                    return Err(e.into());
                }
            }
            at = end;
        }
        Ok(at)
    }
}
