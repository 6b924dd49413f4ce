//! A node's data dir on a small tmpfs, and filling it: the full-disk fault. Mounts are
//! made inside a test's own namespace (`netns`), so they vanish with it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;

use crate::node::Node;

/// A tmpfs under a node's data dir, unmounted on drop.
pub struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// Stops `node`, moves its data onto a tmpfs of `size` (e.g. "64m") mounted at its data
/// dir, and starts it again.
pub async fn move_to_tmpfs(node: &mut Node, size: &str) -> anyhow::Result<Tmpfs> {
    anyhow::ensure!(
        crate::netns::inside(),
        "mount a tmpfs only inside a test namespace"
    );
    let dir = node.data_dir.clone();
    node.terminate(Duration::from_secs(30))?;
    let moved = dir.with_extension("moved");
    std::fs::rename(&dir, &moved)?;
    std::fs::create_dir(&dir)?;
    let dir_text = dir.to_string_lossy().to_string();
    crate::run_tool(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            &dir_text,
        ],
    )?;
    let mounted = Tmpfs(dir.clone());
    crate::run_tool("cp", &["-a", &format!("{}/.", moved.display()), &dir_text])?;
    std::fs::remove_dir_all(&moved)?;
    node.spawn().await?;
    Ok(mounted)
}

/// Fills the filesystem of `dir` with a file named `filler`.
pub fn fill(dir: &Path) -> anyhow::Result<()> {
    // dd stops with "No space left on device": that is the point.
    Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}", dir.join("filler").display()),
            "bs=1M",
        ])
        .output()
        .context("running dd")?;
    Ok(())
}

/// Frees what `fill` took.
pub fn unfill(dir: &Path) -> anyhow::Result<()> {
    std::fs::remove_file(dir.join("filler")).context("removing the filler")
}
