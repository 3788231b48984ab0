//! An HTTP origin in memory, for cooperative fetches: files by URL with their validator,
//! served at a fixed rate, counting what it sent.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use crate::peer::RangeError;

/// How fast the origin sends one response: slow, so that helpers' ranges add up.
pub const ORIGIN_BYTES_PER_S: u64 = 1024 * 1024;

const NANOS_PER_S: u64 = 1_000_000_000;

/// Files an origin serves, and how many bytes it has sent.
#[derive(Default)]
pub struct MemoryOrigin {
    /// url → (validator, bytes).
    files: BTreeMap<String, (String, Bytes)>,
    bytes_served: u64,
}

impl MemoryOrigin {
    /// Serves `data` at `url` under `validator` (replacing what was there: the file changed).
    pub fn put(&mut self, url: &str, validator: &str, data: Bytes) {
        self.files
            .insert(url.to_string(), (validator.to_string(), data));
    }

    /// Bytes sent so far, over every response.
    pub fn bytes_served(&self) -> u64 {
        self.bytes_served
    }

    /// Answers a range request as an origin honouring `If-Range` would: the bytes, a fatal
    /// error when the file changed or is missing.
    pub fn fetch(
        &mut self,
        url: &str,
        validator: &str,
        offset: u64,
        length: u32,
    ) -> Result<Bytes, RangeError> {
        match self.files.get(url) {
            Some((current, _)) if current != validator => Err(RangeError {
                fatal: true,
                refused: false,
                reason: "the origin's validator changed".into(),
            }),
            Some((_, bytes)) => {
                let end = (offset + u64::from(length)).min(bytes.len() as u64);
                self.bytes_served += end - offset;
                Ok(bytes.slice(offset as usize..end as usize))
            }
            None => Err(RangeError {
                fatal: true,
                refused: false,
                reason: "404".into(),
            }),
        }
    }

    /// How long a response of `length` bytes takes to arrive.
    pub fn response_time(length: u32) -> Duration {
        Duration::from_nanos(u64::from(length) * NANOS_PER_S / ORIGIN_BYTES_PER_S)
    }
}
