//! Filesystem steps the stores share (the Raft log's block files, the tables' block files,
//! sled's blobs, Raft snapshots): errors that name their path, directories made durable,
//! removal that takes an already missing file or directory as done, and the names of
//! per-group directories.

use std::fs::File;
use std::io;
use std::path::Path;

/// The error with what was being done to which path.
pub fn with_path(what: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Syncs a directory, so the names in it survive a power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| with_path("syncing", dir, e))
}

/// Makes a directory of block files under a root in the data dir, and syncs the two
/// directories above it, so the new names survive a power loss.
pub fn make_dir_durably(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| with_path("making", dir, e))?;
    for parent in dir.ancestors().skip(1).take(2) {
        if !parent.as_os_str().is_empty() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Removes a file; one already gone is fine.
pub fn remove_file(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(with_path("removing", path, e)),
        _ => Ok(()),
    }
}

/// Removes a directory and what is in it; one already gone is fine.
pub fn remove_dir(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(with_path("removing", dir, e)),
        _ => Ok(()),
    }
}

/// The name of a group's directory (its Raft log's block files, its snapshots). Group ids
/// are made of letters, digits, `.` and `_` (`groups::new_group_id`); anything else is
/// replaced, and a prefix keeps `.` and `..` out, so an id never names a path outside the
/// directory it is under.
pub fn group_dir_name(group: &str) -> String {
    let name: String = group
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '_',
        })
        .collect();
    format!("g-{name}")
}
