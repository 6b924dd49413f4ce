//! A snapshot directory's format: its manifest (the state image, with the names and
//! lengths of its files) beside `files/`, and the stream's layout a manifest implies,
//! which refuses names that could reach outside the directory.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::SnapshotFileError;
use crate::files::{self, with_path};
use crate::raft::{decode, encode};
use crate::state::StateImage;

/// The manifest's file in a snapshot directory.
pub const MANIFEST: &str = "manifest";
/// The directory of the files a snapshot names, in its directory.
pub const FILES: &str = "files";
/// The length prefix before the manifest in the stream.
pub(super) const LEN_BYTES: u64 = 8;
/// The largest manifest taken from a peer: both ends hold it in memory. It is a table's
/// metadata (part list, positions, dedup window, writer log), never its rows.
pub(super) const MANIFEST_MAX: u64 = 1 << 30;

pub(super) struct Layout {
    pub(super) image: StateImage,
    /// Each file's name, start in the stream and length.
    pub(super) files: Vec<(String, u64, u64)>,
    pub(super) end: u64,
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
pub(super) fn layout(
    dir: &Path,
    image: StateImage,
    manifest_len: u64,
) -> Result<Layout, SnapshotFileError> {
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

pub(super) fn files_dir(dir: &Path) -> PathBuf {
    dir.join(FILES)
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

pub(super) fn write_manifest(dir: &Path, bytes: &[u8]) -> Result<(), SnapshotFileError> {
    let path = dir.join(MANIFEST);
    File::create(&path)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .map_err(|e| SnapshotFileError::io(dir, with_path("writing", &path, e)))
}

/// Syncs a snapshot's directories, and the one above that names it.
pub(super) fn sync_tree(dir: &Path) -> Result<(), SnapshotFileError> {
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
pub(super) fn read_manifest(dir: &Path) -> Result<(Vec<u8>, StateImage), SnapshotFileError> {
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

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::super::SnapshotData;
    use super::*;

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
