//! The block buffers of the process: a fixed number, reused, shared by every connection
//! (blocks read from disk to send, blocks received from sockets), placed so that a block
//! can be written or read with direct I/O as it is.

use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use smol::lock::{Semaphore, SemaphoreGuardArc};

/// Alignment of address, offset and length that direct I/O asks for.
pub const DIRECT_ALIGN: usize = 4096;

/// Bytes in one pooled buffer: a whole block (a `Piece` carries at most one) and the
/// frame fields around it.
pub const POOL_BUF_LEN: usize = p2p_core::wire::BLOCK_LEN_MAX as usize + 4096;
/// Buffers for blocks read from disk to send: all connections of the process share them,
/// so a seeder's memory does not grow with the number of peers it serves. Twice the
/// core's serving budget (`serve_blocks_in_flight_total_max`): blocks moving, and blocks
/// held by stalled requesters, which the core keeps within one budget too.
const SEND_BUFFERS: usize = 8;
/// Buffers for blocks received: a bulk frame is read from the socket straight into one,
/// and it is reused once the block is stored.
const RECV_BUFFERS: usize = 12;

/// A fixed number of block-sized buffers, reused. A fresh buffer costs a page fault per
/// 4 KiB the first time it is written (slow here, and glibc returns freed 1 MiB buffers to
/// the OS, so every block paid it again), and a bound on buffers bounds the memory
/// of a peer however many connections it has. Taking a buffer waits while all are in use.
pub struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
    permits: Arc<Semaphore>,
}

/// A buffer from a [`BufferPool`], back in the pool when dropped (also when it has become
/// a `Bytes` through [`PooledBuf::into_bytes`] and the last clone of that is dropped).
pub struct PooledBuf {
    vec: Vec<u8>,
    /// Where the buffer's bytes start in `vec` (see [`BufferPool::take_aligned`]).
    start: usize,
    len: usize,
    /// `None` for a one-off buffer larger than the pool's.
    home: Option<(Arc<BufferPool>, SemaphoreGuardArc)>,
}

impl BufferPool {
    pub fn new(count: usize) -> Arc<BufferPool> {
        Arc::new(BufferPool {
            free: Mutex::new(Vec::with_capacity(count)),
            permits: Arc::new(Semaphore::new(count)),
        })
    }

    /// A buffer of `len` bytes (contents unspecified), once one is free, placed so that
    /// its byte `aligned_at` (at most [`DIRECT_ALIGN`]) sits at an address aligned for
    /// direct I/O: the data of a received `Piece` frame can then be written with
    /// `O_DIRECT` as it is.
    pub async fn take_aligned(self: &Arc<Self>, len: usize, aligned_at: usize) -> PooledBuf {
        if len > POOL_BUF_LEN {
            return PooledBuf {
                vec: vec![0; len],
                start: 0,
                len,
                home: None,
            };
        }
        let permit = self.permits.acquire_arc().await;
        let mut buf = self.with_permit(len, permit);
        buf.start = aligned_start(&buf.vec, aligned_at);
        buf
    }

    /// The same, blocking the thread while none is free (for the blocking pool).
    pub fn take_blocking(self: &Arc<Self>, len: usize) -> PooledBuf {
        if len > POOL_BUF_LEN {
            return PooledBuf {
                vec: vec![0; len],
                start: 0,
                len,
                home: None,
            };
        }
        let permit = self.permits.acquire_arc_blocking();
        let mut buf = self.with_permit(len, permit);
        buf.start = aligned_start(&buf.vec, 0);
        buf
    }

    fn with_permit(self: &Arc<Self>, len: usize, permit: SemaphoreGuardArc) -> PooledBuf {
        let reused = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        PooledBuf {
            vec: reused.unwrap_or_else(|| vec![0; POOL_BUF_LEN + 2 * DIRECT_ALIGN]),
            start: 0,
            len,
            home: Some((Arc::clone(self), permit)),
        }
    }
}

/// The offset in `vec` at which byte `aligned_at` of a buffer lands on a
/// [`DIRECT_ALIGN`] boundary.
fn aligned_start(vec: &[u8], aligned_at: usize) -> usize {
    let aligned_at = aligned_at.min(DIRECT_ALIGN);
    let first = vec.as_ptr().align_offset(DIRECT_ALIGN).min(DIRECT_ALIGN);
    first + DIRECT_ALIGN - aligned_at
}

impl PooledBuf {
    /// Drops the bytes past `len` (a buffer taken a little longer than what it ends up
    /// holding).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The buffer as `Bytes`, without a copy.
    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.vec[self.start..self.start + self.len]
    }
}

impl AsMut<[u8]> for PooledBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.vec[self.start..self.start + self.len]
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Some((pool, _permit)) = self.home.take() {
            let vec = std::mem::take(&mut self.vec);
            pool.free
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(vec);
            // The permit is released after the buffer is back, so a waiter finds it.
        }
    }
}

/// The pool blocks to send are read into.
pub fn send_pool() -> &'static Arc<BufferPool> {
    static POOL: OnceLock<Arc<BufferPool>> = OnceLock::new();
    POOL.get_or_init(|| BufferPool::new(SEND_BUFFERS))
}

/// The pool received blocks are read into.
pub fn recv_pool() -> &'static Arc<BufferPool> {
    static POOL: OnceLock<Arc<BufferPool>> = OnceLock::new();
    POOL.get_or_init(|| BufferPool::new(RECV_BUFFERS))
}
