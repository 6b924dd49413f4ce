//! The sending end of a snapshot's stream: every file is opened when the reader is made,
//! so a newer snapshot that removes this directory does not break a send in flight. Reads
//! from the files are made large and handed out from memory in openraft's chunks.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::manifest::{files_dir, layout, read_manifest};
use super::{Done, Mode, Segment, SnapshotData, SnapshotFileError};
use crate::files::with_path;

/// The most one read from the files takes: openraft asks for a chunk at a time
/// (`snapshot_max_chunk_size`, 3 MiB by default).
pub(super) const READ_MAX: usize = 16 << 20;
/// Smaller reads are made this large, and what they read is handed out from memory.
const READ_MIN: usize = 256 << 10;

pub(super) struct Sender {
    /// The length prefix and the manifest.
    pub(super) head: Vec<u8>,
    pub(super) files: Arc<Vec<Segment>>,
    pub(super) end: u64,
    /// Bytes read from the files at an offset, not all handed out yet.
    pub(super) ahead: Option<(u64, Vec<u8>)>,
}

/// Reads `len` bytes of the files from stream offset `at` (fewer at the end).
fn read_span(files: &[Segment], at: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut out = vec![0; len];
    let mut filled = 0;
    let mut i = files.partition_point(|s| s.start + s.len <= at);
    while filled < len {
        let Some(segment) = files.get(i) else { break };
        let offset = at + filled as u64 - segment.start;
        let want = usize::try_from(segment.len - offset)
            .unwrap_or(usize::MAX)
            .min(len - filled);
        segment
            .file
            .read_exact_at(&mut out[filled..filled + want], offset)?;
        filled += want;
        i += 1;
    }
    out.truncate(filled);
    Ok(out)
}

impl SnapshotData {
    /// A reader of the snapshot in `dir`, with every file open.
    pub fn open(dir: &Path) -> Result<SnapshotData, SnapshotFileError> {
        let (manifest, image) = read_manifest(dir)?;
        let layout = layout(dir, image, manifest.len() as u64)?;
        let mut segments = Vec::with_capacity(layout.files.len());
        for (name, start, len) in &layout.files {
            let path = files_dir(dir).join(name);
            let file = File::open(&path)
                .map_err(|e| SnapshotFileError::io(dir, with_path("opening", &path, e)))?;
            let found = file
                .metadata()
                .map_err(|e| SnapshotFileError::io(dir, with_path("reading", &path, e)))?
                .len();
            if found != *len {
                return Err(SnapshotFileError::Length {
                    dir: dir.to_path_buf(),
                    name: name.clone(),
                    found,
                    expected: *len,
                });
            }
            segments.push(Segment {
                start: *start,
                len: *len,
                file,
            });
        }
        let mut head = (manifest.len() as u64).to_be_bytes().to_vec();
        head.extend_from_slice(&manifest);
        Ok(SnapshotData {
            dir: dir.to_path_buf(),
            pos: 0,
            mode: Mode::Send(Sender {
                head,
                files: Arc::new(segments),
                end: layout.end,
                ahead: None,
            }),
            op: None,
            seek_to: None,
        })
    }
}

impl AsyncRead for SnapshotData {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.poll_op(cx))?;
            let pos = this.pos;
            let Mode::Send(s) = &mut this.mode else {
                return Poll::Ready(Err(this.invalid("a snapshot being received is not read")));
            };
            if pos >= s.end || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let from_memory = match &s.ahead {
                _ if pos < s.head.len() as u64 => Some(&s.head[pos as usize..]),
                Some((at, data)) if *at <= pos && pos < at + data.len() as u64 => {
                    Some(&data[(pos - at) as usize..])
                }
                _ => None,
            };
            if let Some(bytes) = from_memory {
                let n = bytes.len().min(buf.remaining());
                buf.put_slice(&bytes[..n]);
                this.pos += n as u64;
                return Poll::Ready(Ok(()));
            }
            if s.ahead.as_ref().is_some_and(|(at, _)| *at == pos) {
                // A read at this offset came back empty: a file is shorter than it was.
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("snapshot {}: a file ended early", this.dir.display()),
                )));
            }
            let len = buf
                .remaining()
                .clamp(READ_MIN, READ_MAX)
                .min(usize::try_from(s.end - pos).unwrap_or(usize::MAX));
            s.ahead = None;
            let files = s.files.clone();
            this.op = Some(tokio::task::spawn_blocking(move || {
                read_span(&files, pos, len).map(|data| Done::Read { at: pos, data })
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{built, read_all};
    use super::*;
    use crate::files;

    #[tokio::test]
    async fn a_send_in_flight_outlives_its_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let source = tmp.path().join("snap-a");
        built(&source, &[10_000, 20_000]);
        let mut reader = SnapshotData::open(&source).expect("open");
        let whole = read_all(&mut reader).await;
        // A newer snapshot replaced it; the table merged and removed the parts.
        files::remove_dir(&source).expect("remove");
        assert!(!source.exists());
        assert_eq!(read_all(&mut reader).await, whole);
        assert!(
            SnapshotData::open(&source).is_err(),
            "a new reader needs the directory"
        );
    }
}
