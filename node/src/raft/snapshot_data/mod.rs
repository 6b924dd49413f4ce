//! A Raft snapshot on disk, and the one byte stream openraft sends it as.
//!
//! A snapshot is a directory: `manifest` (the state image: sled pairs, and the names and
//! lengths of the files it names) and `files/` (those files: hard links of a table's
//! immutable parts). openraft sees one stream: the manifest's length (8 bytes,
//! big-endian), the manifest, then each file in the manifest's order. No more of the
//! files than one chunk is ever in memory. This module holds the stream, one type for
//! both ends; `manifest` is the directory's format, `send` and `receive` the two ends.
//!
//! File reads and writes run on tokio's blocking pool, one at a time per stream. Must not
//! import `table` or `cluster`: what the files are is the state machine's business.

mod manifest;
mod receive;
mod send;

use std::fs::File;
use std::future::Future as _;
use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::AsyncSeek;
use tokio::task::JoinHandle;

pub use manifest::{make_dir, read_image, write_snapshot, FILES, MANIFEST};
pub use receive::Received;
use receive::Receiver;
use send::Sender;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("snapshot {}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("snapshot {}: unreadable manifest: {reason}", dir.display())]
    Manifest { dir: PathBuf, reason: String },
    #[error("snapshot {}: file {name} holds {found} bytes, its manifest says {expected}", dir.display())]
    Length {
        dir: PathBuf,
        name: String,
        found: u64,
        expected: u64,
    },
    #[error("snapshot {}: {received} bytes were received, of {}", dir.display(), expected.map_or("an unknown length".to_string(), |e| e.to_string()))]
    Incomplete {
        dir: PathBuf,
        received: u64,
        expected: Option<u64>,
    },
}

impl SnapshotFileError {
    fn io(dir: &Path, source: io::Error) -> SnapshotFileError {
        SnapshotFileError::Io {
            dir: dir.to_path_buf(),
            source,
        }
    }
}

/// A file of the stream: where it starts in the stream, its length, and the open file.
struct Segment {
    start: u64,
    len: u64,
    file: File,
}

/// A snapshot as a stream: openraft's `SnapshotData`.
pub struct SnapshotData {
    dir: PathBuf,
    pos: u64,
    mode: Mode,
    /// The file read or write in flight; the next poll of any kind finishes it first.
    op: Option<JoinHandle<io::Result<Done>>>,
    /// Where a started seek goes, once what is in flight is done.
    seek_to: Option<u64>,
}

enum Mode {
    Send(Sender),
    Receive(Receiver),
}

enum Done {
    Read {
        at: u64,
        data: Vec<u8>,
    },
    Wrote {
        at: u64,
        n: usize,
        files: Arc<Vec<Segment>>,
    },
}

impl SnapshotData {
    /// The snapshot's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The stream's length, when known (a receiver knows it once the manifest came).
    fn end(&self) -> Option<u64> {
        match &self.mode {
            Mode::Send(s) => Some(s.end),
            Mode::Receive(r) => r.manifest.as_ref().map(|l| l.end),
        }
    }

    /// Finishes the read or write in flight, if any.
    fn poll_op(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(op) = &mut self.op else {
            return Poll::Ready(Ok(()));
        };
        let done = ready!(Pin::new(op).poll(cx));
        self.op = None;
        match done.map_err(io::Error::other)?? {
            Done::Read { at, data } => {
                if let Mode::Send(s) = &mut self.mode {
                    s.ahead = Some((at, data));
                }
            }
            Done::Wrote { at, n, files } => {
                if let Mode::Receive(r) = &mut self.mode {
                    r.files = Some(files);
                    let to = at + n as u64;
                    r.received = r.received.max(to);
                    self.pos = to;
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    fn invalid(&self, what: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("snapshot {}: {what}", self.dir.display()),
        )
    }
}

impl AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        let target = match position {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => this.end().and_then(|end| end.checked_add_signed(d)),
            SeekFrom::Current(d) => this.pos.checked_add_signed(d),
        };
        match target {
            Some(t) => {
                this.seek_to = Some(t);
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "snapshot {}: seek to {position:?} is out of range",
                    this.dir.display()
                ),
            )),
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let this = self.get_mut();
        ready!(this.poll_op(cx))?;
        if let Some(to) = this.seek_to.take() {
            this.pos = to;
        }
        Poll::Ready(Ok(this.pos))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::state::{ImageTree, StateImage};
    use send::READ_MAX;
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    /// A snapshot directory with files of these lengths (their bytes a pattern of their
    /// index), and its image.
    pub(super) fn built(dir: &Path, lengths: &[u64]) -> StateImage {
        let files = make_dir(dir).expect("files dir");
        let mut image = StateImage {
            trees: vec![ImageTree {
                name: "table/t".into(),
                pairs: vec![(b"m/rows".to_vec(), 42u64.to_be_bytes().to_vec())],
            }],
            files: Vec::new(),
        };
        for (i, len) in lengths.iter().enumerate() {
            let name = format!("part-{i}.parquet");
            let bytes: Vec<u8> = (0..*len).map(|b| (b as u8) ^ (i as u8 * 37)).collect();
            std::fs::write(files.join(&name), bytes).expect("write part");
            image.files.push((name, *len));
        }
        write_snapshot(dir, &image).expect("write snapshot");
        image
    }

    /// What openraft's chunked transport does, with chunks of the given sizes in turn:
    /// the sender seeks to each offset and reads up to the chunk size; the receiver seeks
    /// when the offset is not where it is and writes the chunk whole. After the chunks
    /// numbered in `resend`, the one before is sent again (a retry that goes back).
    pub(crate) async fn stream(
        from: &mut SnapshotData,
        to: &mut SnapshotData,
        sizes: &[usize],
        resend: &[usize],
    ) -> u64 {
        let end = from.seek(SeekFrom::End(0)).await.expect("seek end");
        let mut offset = 0;
        let mut at = 0;
        let mut sent: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut n = 0;
        while offset < end {
            from.seek(SeekFrom::Start(offset)).await.expect("seek");
            let size = sizes[n % sizes.len()];
            let mut buf = Vec::with_capacity(size);
            while buf.len() < size {
                let before = buf.len();
                (&mut *from)
                    .take((size - buf.len()) as u64)
                    .read_to_end(&mut buf)
                    .await
                    .expect("read");
                if buf.len() == before {
                    break;
                }
            }
            let mut chunks = vec![(offset, buf.clone())];
            if resend.contains(&n) {
                if let Some(previous) = sent.last() {
                    chunks.push(previous.clone());
                    chunks.push((offset, buf.clone()));
                }
            }
            for (chunk_at, data) in chunks {
                if chunk_at != at {
                    to.seek(SeekFrom::Start(chunk_at)).await.expect("seek back");
                }
                to.write_all(&data).await.expect("write");
                at = chunk_at + data.len() as u64;
            }
            offset += buf.len() as u64;
            sent.push((offset - buf.len() as u64, buf));
            n += 1;
        }
        to.shutdown().await.expect("shutdown");
        end
    }

    pub(crate) async fn read_all(data: &mut SnapshotData) -> Vec<u8> {
        data.seek(SeekFrom::Start(0)).await.expect("seek");
        let mut out = Vec::new();
        data.read_to_end(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn a_snapshot_goes_through_odd_chunks_and_retries_whole() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let source = tmp.path().join("snap-a");
        // Files that end inside chunks, one of no bytes, one larger than a read.
        let image = built(&source, &[1, 0, 4099, 70_001, READ_MAX as u64 + 3, 5]);
        let mut reader = SnapshotData::open(&source).expect("open");
        let whole = read_all(&mut reader).await;
        let staging = tmp.path().join("staging-b");
        let mut receiver = SnapshotData::receive(&staging).expect("receive");
        // Chunks of one and seven bytes cut the length prefix and the manifest; a retry
        // goes back into the manifest, others into and across files.
        let end = stream(
            &mut reader,
            &mut receiver,
            &[1, 7, 3, 4097, 65_537, 1 << 20, 3 << 20],
            &[2, 5, 9, 12],
        )
        .await;
        assert_eq!(end, whole.len() as u64);
        let received = tokio::task::spawn_blocking(move || receiver.finish())
            .await
            .expect("join")
            .expect("finish");
        assert_eq!(received.dir, staging);
        assert_eq!(received.image, image);
        for (name, _) in &image.files {
            assert_eq!(
                std::fs::read(staging.join(FILES).join(name)).expect("staged"),
                std::fs::read(source.join(FILES).join(name)).expect("source"),
                "{name}"
            );
        }
        // The staged directory is a snapshot like the one sent: it reads the same.
        let mut again = SnapshotData::open(&staging).expect("open received");
        assert_eq!(read_all(&mut again).await, whole);
    }

    #[tokio::test]
    async fn a_snapshot_without_files_goes_through() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let source = tmp.path().join("snap-a");
        let image = built(&source, &[]);
        let mut reader = SnapshotData::open(&source).expect("open");
        let staging = tmp.path().join("staging-b");
        let mut receiver = SnapshotData::receive(&staging).expect("receive");
        stream(&mut reader, &mut receiver, &[5, 3 << 20], &[1]).await;
        let received = tokio::task::spawn_blocking(move || receiver.finish())
            .await
            .expect("join")
            .expect("finish");
        assert_eq!(received.image, image);
    }
}
