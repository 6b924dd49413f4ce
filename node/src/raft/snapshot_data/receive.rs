//! The receiving end of a snapshot's stream: it writes into a staging directory. The
//! manifest is buffered until it is whole, then a write at any offset (a retried chunk
//! seeks back) becomes positioned writes into the staged files; `finish` checks that
//! every byte came and syncs them before the state machine installs them.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::AsyncWrite;

use super::manifest::{
    files_dir, layout, make_dir, sync_tree, write_manifest, Layout, LEN_BYTES, MANIFEST_MAX,
};
use super::{Done, Mode, Segment, SnapshotData, SnapshotFileError};
use crate::files::{self, with_path};
use crate::raft::decode;
use crate::state::StateImage;

pub(super) struct Receiver {
    /// The stream's first bytes, up to the end of the manifest.
    pub(super) head: Vec<u8>,
    /// Where the manifest ends in the stream, once its length came.
    pub(super) head_end: Option<u64>,
    /// The manifest, once whole, and the stream's layout after it.
    pub(super) manifest: Option<Layout>,
    /// The staged files, once the first of their bytes came.
    pub(super) files: Option<Arc<Vec<Segment>>>,
    /// Every byte before this offset came: chunks come in order, a retry may go back.
    pub(super) received: u64,
    /// Set once `finish` handed the directory over: dropping then keeps it.
    pub(super) kept: bool,
}

/// A snapshot received whole and synced, in its staging directory.
pub struct Received {
    pub dir: PathBuf,
    pub image: StateImage,
}

/// Writes `data` into the files at stream offset `at`. A file whose last bytes this
/// writes is synced: the syncs spread over the stream instead of all landing in
/// `finish`, inside the last chunk's RPC and its timeout.
fn write_span(files: &[Segment], at: u64, data: &[u8]) -> io::Result<()> {
    let mut done = 0;
    let mut i = files.partition_point(|s| s.start + s.len <= at);
    while done < data.len() {
        let Some(segment) = files.get(i) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a write past the snapshot's last file",
            ));
        };
        let offset = at + done as u64 - segment.start;
        let want = usize::try_from(segment.len - offset)
            .unwrap_or(usize::MAX)
            .min(data.len() - done);
        segment
            .file
            .write_all_at(&data[done..done + want], offset)?;
        if offset + want as u64 == segment.len {
            segment.file.sync_data()?;
        }
        done += want;
        i += 1;
    }
    Ok(())
}

/// Creates (or opens again) the staged files of a layout.
fn stage_files(dir: &Path, layout: &[(String, u64, u64)]) -> io::Result<Vec<Segment>> {
    let files = files_dir(dir);
    layout
        .iter()
        .map(|(name, start, len)| {
            let path = files.join(name);
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| with_path("staging", &path, e))?;
            Ok(Segment {
                start: *start,
                len: *len,
                file,
            })
        })
        .collect()
}

fn remove_dir_logged(dir: &Path) {
    if let Err(e) = files::remove_dir(dir) {
        tracing::warn!(error = %e, "removing a snapshot directory");
    }
}

impl SnapshotData {
    /// A receiver that stages a snapshot in `dir`, a new directory. Dropped before
    /// `finish`, it removes the directory.
    pub fn receive(dir: &Path) -> Result<SnapshotData, SnapshotFileError> {
        make_dir(dir)?;
        Ok(SnapshotData {
            dir: dir.to_path_buf(),
            pos: 0,
            mode: Mode::Receive(Receiver {
                head: Vec::new(),
                head_end: None,
                manifest: None,
                files: None,
                received: 0,
                kept: false,
            }),
            op: None,
            seek_to: None,
        })
    }

    /// Checks that the whole stream was received, writes the manifest, and syncs the
    /// files (most were as they completed) and the directory: what is installed survives
    /// a power loss. Blocking.
    pub fn finish(mut self) -> Result<Received, SnapshotFileError> {
        let dir = self.dir.clone();
        if self.op.is_some() {
            return Err(SnapshotFileError::io(
                &dir,
                io::Error::other("finished with a write in flight"),
            ));
        }
        let Mode::Receive(r) = &mut self.mode else {
            return Err(SnapshotFileError::io(
                &dir,
                io::Error::other("a snapshot being sent cannot be installed"),
            ));
        };
        let expected = r.manifest.as_ref().map(|l| l.end);
        let Some(layout) = r.manifest.take().filter(|_| expected == Some(r.received)) else {
            return Err(SnapshotFileError::Incomplete {
                dir,
                received: r.received,
                expected,
            });
        };
        // Files of no bytes had no write to make them.
        let staged = match r.files.take() {
            Some(files) => files,
            None => Arc::new(
                stage_files(&dir, &layout.files).map_err(|e| SnapshotFileError::io(&dir, e))?,
            ),
        };
        for segment in staged.iter() {
            segment
                .file
                .sync_data()
                .map_err(|e| SnapshotFileError::io(&dir, e))?;
        }
        let manifest = r.head.get(LEN_BYTES as usize..).unwrap_or_default();
        write_manifest(&dir, manifest)?;
        sync_tree(&dir)?;
        r.kept = true;
        Ok(Received {
            dir,
            image: layout.image,
        })
    }

    /// Takes bytes of the stream's head (length prefix and manifest) at the current
    /// position; returns how many it took.
    fn write_head(&mut self, buf: &[u8]) -> io::Result<usize> {
        let pos = self.pos;
        let dir = self.dir.clone();
        let Mode::Receive(r) = &mut self.mode else {
            return Err(io::Error::other("not a receiver"));
        };
        let head_end = r.head_end.unwrap_or(LEN_BYTES);
        let p = usize::try_from(pos).map_err(io::Error::other)?;
        let n = buf
            .len()
            .min(usize::try_from(head_end - pos).unwrap_or(usize::MAX));
        if r.manifest.is_some() {
            // A retried chunk: the same bytes again.
            if r.head.get(p..p + n) != Some(&buf[..n]) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a chunk sent again differs from the first time",
                ));
            }
            self.pos += n as u64;
            return Ok(n);
        }
        let overlap = (r.head.len() - p).min(n);
        r.head[p..p + overlap].copy_from_slice(&buf[..overlap]);
        r.head.extend_from_slice(&buf[overlap..n]);
        self.pos += n as u64;
        r.received = r.received.max(self.pos);
        if r.head_end.is_none() && r.head.len() as u64 >= LEN_BYTES {
            let mut len = [0; LEN_BYTES as usize];
            len.copy_from_slice(&r.head[..LEN_BYTES as usize]);
            let len = u64::from_be_bytes(len);
            if len > MANIFEST_MAX {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a manifest of {len} bytes, more than the {MANIFEST_MAX} taken"),
                ));
            }
            r.head_end = Some(LEN_BYTES + len);
        }
        if let Some(end) = r.head_end.filter(|end| r.head.len() as u64 == *end) {
            let manifest = &r.head[LEN_BYTES as usize..];
            let image: StateImage = decode(manifest).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("manifest: {e}"))
            })?;
            let layout = layout(&dir, image, end - LEN_BYTES)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            r.manifest = Some(layout);
        }
        Ok(n)
    }
}

impl Drop for SnapshotData {
    fn drop(&mut self) {
        let Mode::Receive(r) = &self.mode else {
            return;
        };
        if r.kept {
            return;
        }
        // A stream given up (a newer one began, openraft found it stale, or it failed).
        // Rare, and mostly unlinks: done here rather than left for the next start.
        remove_dir_logged(&self.dir);
    }
}

impl AsyncWrite for SnapshotData {
    /// A write returns once its bytes are in the staged files; pending, it must be polled
    /// again with the same bytes (as `write_all` does).
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.op.is_some() {
            // The write an earlier call started, with these same bytes.
            let before = this.pos;
            ready!(this.poll_op(cx))?;
            if matches!(this.mode, Mode::Receive(_)) {
                return Poll::Ready(Ok((this.pos - before) as usize));
            }
        }
        let pos = this.pos;
        let Mode::Receive(r) = &mut this.mode else {
            return Poll::Ready(Err(this.invalid("a snapshot being sent is not written")));
        };
        if pos > r.received {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "snapshot {}: a write at {pos} leaves a gap after byte {}",
                    this.dir.display(),
                    r.received
                ),
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if pos < r.head_end.unwrap_or(LEN_BYTES) {
            return Poll::Ready(this.write_head(buf));
        }
        let Some(layout) = &r.manifest else {
            return Poll::Ready(Err(this.invalid("file bytes before a whole manifest")));
        };
        if pos + buf.len() as u64 > layout.end {
            return Poll::Ready(Err(this.invalid("a write past the snapshot's end")));
        }
        let data = buf.to_vec();
        let staged = r.files.clone();
        let names = staged.is_none().then(|| layout.files.clone());
        let dir = this.dir.clone();
        this.op = Some(tokio::task::spawn_blocking(move || {
            let files = match (staged, names) {
                (Some(files), _) => files,
                (None, names) => Arc::new(stage_files(&dir, &names.unwrap_or_default())?),
            };
            write_span(&files, pos, &data)?;
            Ok(Done::Wrote {
                at: pos,
                n: data.len(),
                files,
            })
        }));
        let before = this.pos;
        ready!(this.poll_op(cx))?;
        Poll::Ready(Ok((this.pos - before) as usize))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_op(cx)
    }

    /// Only finishes what is in flight: the files are synced by `finish`, which may block.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_op(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::io::SeekFrom;

    use tokio::io::{AsyncSeekExt, AsyncWriteExt};

    use super::super::tests::{built, read_all};
    use super::*;

    #[tokio::test]
    async fn a_stream_cut_short_or_given_up_installs_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let source = tmp.path().join("snap-a");
        built(&source, &[50_000]);
        let mut reader = SnapshotData::open(&source).expect("open");
        let whole = read_all(&mut reader).await;

        let staging = tmp.path().join("staging-b");
        let mut receiver = SnapshotData::receive(&staging).expect("receive");
        receiver
            .write_all(&whole[..whole.len() - 10])
            .await
            .expect("write");
        // Not a whole stream: refused, and the staging directory goes with it.
        let finished = tokio::task::spawn_blocking(move || receiver.finish())
            .await
            .expect("join");
        let expected = Some(whole.len() as u64);
        assert!(
            matches!(&finished, Err(SnapshotFileError::Incomplete { expected: e, .. }) if *e == expected),
            "{:?}",
            finished.err()
        );
        assert!(!staging.exists());

        // A write that skips bytes, or goes past the end, is refused.
        let staging = tmp.path().join("staging-c");
        let mut receiver = SnapshotData::receive(&staging).expect("receive");
        receiver.write_all(&whole[..100]).await.expect("write");
        receiver.seek(SeekFrom::Start(200)).await.expect("seek");
        assert!(receiver.write_all(&whole[200..300]).await.is_err());
        receiver.seek(SeekFrom::Start(0)).await.expect("seek");
        let mut longer = whole.clone();
        longer.push(0);
        assert!(receiver.write_all(&longer).await.is_err());
        drop(receiver);
        assert!(!staging.exists());
    }
}
