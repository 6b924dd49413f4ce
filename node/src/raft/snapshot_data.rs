//! A Raft snapshot on disk, and the one byte stream openraft sends it as.
//!
//! A snapshot is a directory: `manifest` (the state image: sled pairs, and the names and
//! lengths of the files it names) and `files/` (those files: hard links of a table's
//! immutable parts). openraft sees one stream: the manifest's length (8 bytes,
//! big-endian), the manifest, then each file in the manifest's order. No more of the
//! files than one chunk is ever in memory.
//!
//! Sending opens every file when the reader is made, so a newer snapshot that removes this
//! directory does not break a send in flight. Receiving writes into a staging directory:
//! the manifest is buffered until it is whole, then a write at any offset (a retried
//! chunk seeks back) becomes positioned writes into the staged files; `finish` checks
//! that every byte came and syncs them before the state machine installs them.
//!
//! File reads and writes run on tokio's blocking pool, one at a time per stream. Must not
//! import `table` or `cluster`: what the files are is the state machine's business.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::future::Future as _;
use std::io::{self, SeekFrom, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;

use super::{decode, encode};
use crate::files::{self, with_path};
use crate::state::StateImage;

/// The manifest's file in a snapshot directory.
pub const MANIFEST: &str = "manifest";
/// The directory of the files a snapshot names, in its directory.
pub const FILES: &str = "files";
/// The length prefix before the manifest in the stream.
const LEN_BYTES: u64 = 8;
/// The largest manifest taken from a peer: both ends hold it in memory. It is a table's
/// metadata (part list, positions, dedup window, writer log), never its rows.
const MANIFEST_MAX: u64 = 1 << 30;
/// The most one read from the files takes: openraft asks for a chunk at a time
/// (`snapshot_max_chunk_size`, 3 MiB by default).
const READ_MAX: usize = 16 << 20;
/// Smaller reads are made this large, and what they read is handed out from memory.
const READ_MIN: usize = 256 << 10;

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

struct Sender {
    /// The length prefix and the manifest.
    head: Vec<u8>,
    files: Arc<Vec<Segment>>,
    end: u64,
    /// Bytes read from the files at an offset, not all handed out yet.
    ahead: Option<(u64, Vec<u8>)>,
}

struct Receiver {
    /// The stream's first bytes, up to the end of the manifest.
    head: Vec<u8>,
    /// Where the manifest ends in the stream, once its length came.
    head_end: Option<u64>,
    /// The manifest, once whole, and the stream's layout after it.
    manifest: Option<Layout>,
    /// The staged files, once the first of their bytes came.
    files: Option<Arc<Vec<Segment>>>,
    /// Every byte before this offset came: chunks come in order, a retry may go back.
    received: u64,
    /// Set once `finish` handed the directory over: dropping then keeps it.
    kept: bool,
}

struct Layout {
    image: StateImage,
    /// Each file's name, start in the stream and length.
    files: Vec<(String, u64, u64)>,
    end: u64,
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

/// A snapshot received whole and synced, in its staging directory.
pub struct Received {
    pub dir: PathBuf,
    pub image: StateImage,
}

/// Whether a name from a manifest may name a file in a snapshot directory: one plain
/// component, so a peer's manifest cannot reach outside it.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 255
        && !name.contains(['/', '\\', '\0'])
}

/// The stream's layout after a manifest of `manifest_len` bytes; refuses names that are
/// not plain or that repeat.
fn layout(dir: &Path, image: StateImage, manifest_len: u64) -> Result<Layout, SnapshotFileError> {
    let bad = |reason: String| SnapshotFileError::Manifest {
        dir: dir.to_path_buf(),
        reason,
    };
    let mut seen = HashSet::new();
    let mut files = Vec::with_capacity(image.files.len());
    let mut at = LEN_BYTES + manifest_len;
    for (name, len) in &image.files {
        if !plain_name(name) {
            return Err(bad(format!("{name:?} is not a plain file name")));
        }
        if !seen.insert(name.as_str()) {
            return Err(bad(format!("{name} is named twice")));
        }
        files.push((name.clone(), at, *len));
        at = at
            .checked_add(*len)
            .ok_or_else(|| bad("the files' lengths overflow".into()))?;
    }
    Ok(Layout {
        image,
        files,
        end: at,
    })
}

fn files_dir(dir: &Path) -> PathBuf {
    dir.join(FILES)
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

/// Writes a built snapshot's manifest into its directory, whose `files/` holds the
/// image's files, and makes the directory and its names durable.
pub fn write_snapshot(dir: &Path, image: &StateImage) -> Result<(), SnapshotFileError> {
    let bytes = encode(image).map_err(|e| SnapshotFileError::Manifest {
        dir: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_manifest(dir, &bytes)?;
    sync_tree(dir)
}

fn write_manifest(dir: &Path, bytes: &[u8]) -> Result<(), SnapshotFileError> {
    let path = dir.join(MANIFEST);
    File::create(&path)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .map_err(|e| SnapshotFileError::io(dir, with_path("writing", &path, e)))
}

/// Syncs a snapshot's directories, and the one above that names it.
fn sync_tree(dir: &Path) -> Result<(), SnapshotFileError> {
    let mut dirs = vec![files_dir(dir), dir.to_path_buf()];
    dirs.extend(dir.parent().map(Path::to_path_buf));
    for d in dirs {
        files::sync_dir(&d).map_err(|e| SnapshotFileError::io(dir, e))?;
    }
    Ok(())
}

/// Makes a snapshot directory's `files/`, empty: what a table's pin links its parts into.
pub fn make_dir(dir: &Path) -> Result<PathBuf, SnapshotFileError> {
    let files = files_dir(dir);
    std::fs::create_dir_all(&files)
        .map_err(|e| SnapshotFileError::io(dir, with_path("making", &files, e)))?;
    Ok(files)
}

/// The manifest of the snapshot in `dir`, as bytes and decoded.
fn read_manifest(dir: &Path) -> Result<(Vec<u8>, StateImage), SnapshotFileError> {
    let path = dir.join(MANIFEST);
    let manifest = std::fs::read(&path)
        .map_err(|e| SnapshotFileError::io(dir, with_path("reading", &path, e)))?;
    let image: StateImage = decode(&manifest).map_err(|e| SnapshotFileError::Manifest {
        dir: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok((manifest, image))
}

/// The image of the snapshot in `dir`: its pairs and the files it names.
pub fn read_image(dir: &Path) -> Result<StateImage, SnapshotFileError> {
    read_manifest(dir).map(|(_, image)| image)
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
    use crate::state::ImageTree;
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    /// A snapshot directory with files of these lengths (their bytes a pattern of their
    /// index), and its image.
    fn built(dir: &Path, lengths: &[u64]) -> StateImage {
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

    #[tokio::test]
    async fn a_manifest_cannot_name_a_path_outside_the_snapshot() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for name in ["../escape", "..", "a/b", ""] {
            let image = StateImage {
                trees: Vec::new(),
                files: vec![(name.to_string(), 1)],
            };
            let manifest = encode(&image).expect("encode");
            let mut stream = (manifest.len() as u64).to_be_bytes().to_vec();
            stream.extend_from_slice(&manifest);
            stream.push(7);
            let staging = tmp.path().join("staging");
            let mut receiver = SnapshotData::receive(&staging).expect("receive");
            assert!(receiver.write_all(&stream).await.is_err(), "{name:?}");
            drop(receiver);
            assert!(!staging.exists());
        }
        assert!(!tmp.path().join("escape").exists());
    }
}
