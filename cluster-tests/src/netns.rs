//! Network partitions made real: a test runs itself again inside a network namespace of
//! its own (`ip netns exec`), where nodes listen on 127.0.1.k and iptables rules in that
//! namespace drop the packets between two of them. The machine's own rules are never
//! touched, and the namespace (with its rules) is deleted when the test ends.

use std::process::Command;

use anyhow::Context as _;

/// Set in the re-run test: the namespace it runs in.
const INSIDE_VAR: &str = "SLUICE_TEST_NETNS";

/// Whether this process runs inside a test namespace.
pub fn inside() -> bool {
    std::env::var_os(INSIDE_VAR).is_some()
}

/// A network namespace, deleted on drop.
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .output();
    }
}

/// Runs the test `test` of the current test binary inside a fresh namespace (loopback up),
/// and fails when it fails; its output goes to this test's output.
pub fn run_self_inside(test: &str) -> anyhow::Result<()> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let name = format!("sluice-test-{}-{n}", std::process::id());
    crate::run_tool("ip", &["netns", "add", &name])
        .context("network namespaces need root and iproute2 (scripts/env.sh installs it)")?;
    let ns = Namespace(name);
    crate::run_tool(
        "ip",
        &["netns", "exec", &ns.0, "ip", "link", "set", "lo", "up"],
    )?;
    let exe = std::env::current_exe().context("the test binary")?;
    let status = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE_VAR, &ns.0)
        .status()
        .context("running the test inside the namespace")?;
    anyhow::ensure!(
        status.success(),
        "{test} failed inside namespace {} ({status}); its output is above",
        ns.0
    );
    Ok(())
}

fn iptables(args: &[&str]) -> anyhow::Result<()> {
    anyhow::ensure!(
        inside(),
        "refusing to change firewall rules outside a test namespace"
    );
    crate::run_tool("iptables", args).context("iptables (scripts/env.sh installs it)")
}

/// Drops every packet between hosts `a` and `b`, both ways.
pub fn cut(a: &str, b: &str) -> anyhow::Result<()> {
    iptables(&["-A", "INPUT", "-s", a, "-d", b, "-j", "DROP"])?;
    iptables(&["-A", "INPUT", "-s", b, "-d", a, "-j", "DROP"])
}

/// Cuts `host` off from every one of `others`.
pub fn isolate(host: &str, others: &[&str]) -> anyhow::Result<()> {
    for other in others.iter().filter(|o| **o != host) {
        cut(host, other)?;
    }
    Ok(())
}

/// Removes every cut.
pub fn heal() -> anyhow::Result<()> {
    iptables(&["-F", "INPUT"])
}
