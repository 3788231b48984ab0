//! The disk as the machines see it: a read, a store or a prepare is an action that takes
//! `disk_latency_us`, then comes back as an event with its result. The disks themselves
//! (what each node has written, and whether it equals the source) are `storage.rs`.

use bytes::Bytes;
use p2p_core::ids::ContentId;
use p2p_core::manifest::ChunkCheck;
use p2p_core::peer::{PreparedChunks, StoreOutcome};

use crate::event_queue::Nanos;
use crate::storage::{StoreVerdict, verify};
use crate::trace::DigestTag;
use crate::world::World;
use crate::world::event::{Event, PrepareOp, ReadOp, StoreOp};
use crate::world::node::Machine;

impl World {
    /// When a disk action started now completes.
    pub(crate) fn disk_done_at(&self) -> Nanos {
        self.now() + self.config.disk_latency_us * 1_000
    }

    /// `ReadChunk`: the block is read from the source, if the node's disk has the chunk.
    pub(crate) fn read_chunk(
        &mut self,
        node: usize,
        token: u64,
        content_id: ContentId,
        (chunk_index, offset, length): (u32, u32, u32),
    ) {
        let now = self.now();
        self.safety.on_read(
            &mut self.violations,
            now,
            &self.nodes[node],
            content_id,
            chunk_index,
        );
        let incarnation = self.nodes[node].incarnation;
        self.digest
            .mix_tagged(DigestTag::ReadChunk, &[node as u64, token]);
        let read = ReadOp {
            node,
            incarnation,
            token,
            content_id,
            chunk_index,
            offset,
            length,
        };
        self.queue
            .schedule(self.disk_done_at(), Event::DiskRead(Box::new(read)));
    }

    /// `StoreChunk`: verified and written when it comes due.
    pub(crate) fn store_chunk(
        &mut self,
        node: usize,
        token: u64,
        content_id: ContentId,
        chunk_index: u32,
        check: ChunkCheck,
        data: Bytes,
    ) {
        let incarnation = self.nodes[node].incarnation;
        self.digest.mix_tagged(
            DigestTag::StoreChunk,
            &[node as u64, token, chunk_index as u64],
        );
        let store = StoreOp {
            node,
            incarnation,
            token,
            content_id,
            chunk_index,
            check,
            data,
        };
        self.queue
            .schedule(self.disk_done_at(), Event::DiskStore(Box::new(store)));
    }

    /// `PrepareDownload`: the file is made ready for `chunk_count` chunks.
    pub(crate) fn prepare_download(
        &mut self,
        node: usize,
        content_id: ContentId,
        chunk_count: u32,
    ) {
        let incarnation = self.nodes[node].incarnation;
        self.digest
            .mix_tagged(DigestTag::PrepareDownload, &[node as u64]);
        let prepare = PrepareOp {
            node,
            incarnation,
            content_id,
            chunk_count,
        };
        self.queue
            .schedule(self.disk_done_at(), Event::Prepared(Box::new(prepare)));
    }

    pub(crate) fn on_disk_read(&mut self, op: ReadOp) {
        let ReadOp {
            node,
            incarnation,
            token,
            content_id,
            chunk_index,
            offset,
            length,
        } = op;
        if self.nodes[node].incarnation != incarnation {
            return;
        }
        let result = if content_id != self.source.content_id
            || !self.nodes[node].disk.has(content_id, chunk_index)
        {
            Err(format!("chunk {chunk_index} is not on disk"))
        } else {
            self.source
                .block(chunk_index, offset, length)
                .ok_or_else(|| format!("bytes {offset}+{length} are outside chunk {chunk_index}"))
        };
        self.digest.mix_tagged(
            DigestTag::DiskRead,
            &[node as u64, token, result.is_ok() as u64],
        );
        self.drive(node, |m, now| {
            if let Machine::Peer(p) = m {
                p.handle_read(now, token, result);
            }
        });
    }

    pub(crate) fn on_disk_store(&mut self, op: StoreOp) {
        let StoreOp {
            node,
            incarnation,
            token,
            content_id,
            chunk_index,
            check,
            data,
        } = op;
        if self.nodes[node].incarnation != incarnation {
            // The write was lost in the crash, as it would be without a sync.
            return;
        }
        let outcome = self.write_verified(node, content_id, chunk_index, &check, &data);
        self.digest.mix_tagged(
            DigestTag::DiskStored,
            &[
                node as u64,
                token,
                chunk_index as u64,
                (outcome == StoreOutcome::Stored) as u64,
            ],
        );
        self.trace(|| format!("node{node} stored chunk {chunk_index}: {outcome:?}"));
        self.drive(node, |m, now| {
            if let Machine::Peer(p) = m {
                p.handle_stored(now, token, outcome);
            }
        });
    }

    /// Verifies a chunk as the runtime would and writes it to the node's disk if it passes.
    fn write_verified(
        &mut self,
        node: usize,
        content_id: ContentId,
        chunk_index: u32,
        check: &ChunkCheck,
        data: &Bytes,
    ) -> StoreOutcome {
        if content_id != self.source.content_id {
            return StoreOutcome::Io("no such file".into());
        }
        match verify(&self.source, chunk_index, check, data) {
            StoreVerdict::Written { identical } => {
                let n = self.source.chunk_count();
                self.nodes[node]
                    .disk
                    .write(content_id, n, chunk_index, identical);
                let now = self.now();
                self.safety.on_store(
                    &mut self.violations,
                    now,
                    &self.nodes[node],
                    chunk_index,
                    identical,
                );
                StoreOutcome::Stored
            }
            StoreVerdict::Mismatch => StoreOutcome::HashMismatch,
        }
    }

    pub(crate) fn on_prepared(&mut self, op: PrepareOp) {
        let PrepareOp {
            node,
            incarnation,
            content_id,
            chunk_count,
        } = op;
        if self.nodes[node].incarnation != incarnation {
            return;
        }
        let result =
            if content_id == self.source.content_id && chunk_count == self.source.chunk_count() {
                self.nodes[node].has_manifest = true;
                Ok(PreparedChunks {
                    have: self.nodes[node].disk.prepare(content_id, chunk_count),
                    wanted: self.nodes[node].wanted.clone(),
                })
            } else {
                Err("the manifest does not describe the file being shared".to_string())
            };
        self.digest.mix_tagged(DigestTag::Prepared, &[node as u64]);
        self.drive(node, |m, now| {
            if let Machine::Peer(p) = m {
                p.download_prepared(now, content_id, result);
            }
        });
    }
}
