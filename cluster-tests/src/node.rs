//! A real `sluice node` process, its data dir, and a gRPC client to it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use sluice::proto::admin_client::AdminClient;
use sluice::proto::{ExecuteRequest, ExecuteResponse};
use tonic::transport::Channel;

/// The `sluice` binary: `SLUICE_BIN`, else next to this test executable's target dir.
pub fn binary() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("SLUICE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating the test executable")?;
    // target/<profile>/deps/<test> -> target/<profile>/sluice
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable has no target dir")?;
    let bin = dir.join("sluice");
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build it first (cargo build -p sluice)",
        bin.display()
    );
    Ok(bin)
}

pub struct Node {
    pub name: String,
    pub data_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    pub address: String,
    /// host:port, fixed for the node's life so that peers find it again after a restart.
    pub listen: String,
    pub extra_args: Vec<String>,
    /// A program the node runs under, with its arguments (e.g. `fiu-run -x` to inject
    /// I/O errors); empty for none.
    pub wrapper: Vec<String>,
    log: PathBuf,
}

/// Where test ports come from: clear of the fixed ports of the scripts (7070-7072, 19092,
/// 19192, 27070-27173, 29092) and of the ephemeral range.
const PORTS: std::ops::Range<u16> = 20_000..27_000;

/// Ports this test process has handed out. A port is only free until someone binds it,
/// and the tests of one binary run in parallel: without this, two tests (or one test's
/// node and metrics address) could draw the same port before either binds it.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// A port that was free a moment ago and was not handed out before in this process,
/// below the kernel's ephemeral range (32768 and up): a port from that range can be taken
/// by any outgoing connection (librdkafka's, a peer's) before the node binds it.
pub fn free_port() -> anyhow::Result<u16> {
    free_port_run(1)
}

/// The first of `count` consecutive ports, each as `free_port` gives them (a broker's
/// controller listens next to its client port).
pub fn free_port_run(count: u16) -> anyhow::Result<u16> {
    use rand::Rng as _;
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..1_000 {
        let first = rand::rng().random_range(PORTS.start..PORTS.end - count);
        let run = first..first + count;
        let usable = run.clone().all(|port| {
            !handed_out.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        });
        if usable {
            handed_out.extend(run);
            return Ok(first);
        }
    }
    anyhow::bail!("no {count} free ports in a row in {PORTS:?}")
}

/// Runs `sluice sql` against `host` with `args`, `stdin` on its standard input.
pub fn sluice_sql(host: &str, args: &[&str], stdin: &[u8]) -> anyhow::Result<std::process::Output> {
    let mut child = Command::new(binary()?)
        .arg("sql")
        .args(["--host", host])
        .args(args)
        .env_remove("SLUICE_HOST")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running sluice sql")?;
    let mut input = child.stdin.take().context("no stdin")?;
    let data = stdin.to_vec();
    // Written from a thread: the client reads while it sends.
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut input, &data));
    let output = child.wait_with_output().context("waiting for sluice sql")?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("the writer thread failed"))??;
    Ok(output)
}

impl Node {
    /// Starts a one-node cluster in a fresh data dir.
    pub async fn start(name: &str) -> anyhow::Result<Node> {
        Node::start_with(name, vec!["--bootstrap".to_string()]).await
    }

    /// Starts a node in a fresh data dir with extra `sluice node` arguments.
    pub async fn start_with(name: &str, extra_args: Vec<String>) -> anyhow::Result<Node> {
        Node::start_on(name, free_port()?, extra_args).await
    }

    /// Starts a node on a given loopback port.
    pub async fn start_on(name: &str, port: u16, extra_args: Vec<String>) -> anyhow::Result<Node> {
        Node::start_at(name, &format!("127.0.0.1:{port}"), extra_args).await
    }

    /// Starts a node listening on `listen` (host:port; any 127.x.y.z is local).
    pub async fn start_at(
        name: &str,
        listen: &str,
        extra_args: Vec<String>,
    ) -> anyhow::Result<Node> {
        Node::start_wrapped(name, listen, extra_args, Vec::new()).await
    }

    /// Starts a node listening on `listen` under `wrapper` (see `Node::wrapper`).
    pub async fn start_wrapped(
        name: &str,
        listen: &str,
        extra_args: Vec<String>,
        wrapper: Vec<String>,
    ) -> anyhow::Result<Node> {
        // SLUICE_KEEP_NODE_DIRS=1 keeps each node's data dir and log for a post-mortem.
        let dir = tempfile::Builder::new()
            .prefix(&format!("sluice-{name}-"))
            .disable_cleanup(std::env::var_os("SLUICE_KEEP_NODE_DIRS").is_some())
            .tempdir()
            .context("creating a data dir")?;
        // The log beside the data dir, not in it: it must survive a wipe and a full disk.
        let data_dir = dir.path().join("data");
        let mut node = Node {
            name: name.to_string(),
            log: dir.path().join("node.log"),
            data_dir,
            _dir: Some(dir),
            child: None,
            address: String::new(),
            listen: listen.to_string(),
            extra_args,
            wrapper,
        };
        node.spawn().await?;
        Ok(node)
    }

    /// Starts (again) the process on the same data dir.
    pub async fn spawn(&mut self) -> anyhow::Result<()> {
        let address_file = self.data_dir.join(sluice::server::ADDRESS_FILE);
        let _ = std::fs::remove_file(&address_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .context("opening the node log")?;
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary()?);
                c
            }
            None => Command::new(binary()?),
        };
        let child = command
            .arg("node")
            .arg("--node-id")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--grpc-addr")
            .arg(&self.listen)
            .args(&self.extra_args)
            .env("SLUICE_LOG", "info,sluice=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting sluice node")?;
        self.child = Some(child);
        let address = crate::wait_for("the node's address file", Duration::from_secs(30), || {
            let f = address_file.clone();
            async move { std::fs::read_to_string(f).ok().filter(|s| !s.is_empty()) }
        })
        .await
        .with_context(|| self.log_tail())?;
        self.address = format!("http://{address}");
        Ok(())
    }

    /// Deletes the node's data (it must be stopped), as a lost volume would.
    pub fn wipe(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.is_running(), "stop {} before wiping it", self.name);
        for entry in std::fs::read_dir(&self.data_dir)? {
            let path = entry?.path();
            if path == self.log {
                continue;
            }
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends a signal by name (STOP, CONT, ...) to the running process.
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let pid = self
            .pid()
            .with_context(|| format!("node {} is not running", self.name))?;
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .context("sending a signal")?;
        anyhow::ensure!(status.success(), "kill -{name} {pid} failed");
        Ok(())
    }

    /// SIGKILL: no chance to flush or drain.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("kill -9")?;
            child.wait().context("reaping the node")?;
        }
        Ok(())
    }

    /// Whether the process exited by itself, with its status (then it is not running).
    pub fn try_exited(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let exited = match self.child.as_mut() {
            Some(child) => child.try_wait().context("waiting for the node")?,
            None => anyhow::bail!("node {} is not running", self.name),
        };
        if exited.is_some() {
            self.child = None;
        }
        Ok(exited)
    }

    /// Waits up to `deadline` for the process to exit by itself; its status if it did.
    pub async fn exited_within(
        &mut self,
        deadline: Duration,
    ) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.try_exited()? {
                return Ok(Some(status));
            }
            if start.elapsed() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM and wait for a clean exit within `deadline` (a hang is an error).
    pub fn terminate(&mut self, deadline: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let Some(mut child) = self.child.take() else {
            anyhow::bail!("node {} is not running", self.name);
        };
        let pid = child.id().to_string();
        let log_before = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("sending SIGTERM")?;
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                // A step cut short by the node's own bound is a hang it survived: a failure.
                let overran = self.log_since(log_before, sluice::shutdown::SHUTDOWN_OVERRAN);
                if !overran.is_empty() {
                    anyhow::bail!(
                        "node {} stopped, but its shutdown overran:\n{}",
                        self.name,
                        overran.join("\n")
                    );
                }
                if !status.success() {
                    anyhow::bail!(
                        "node {} exited with {status} after SIGTERM\n{}",
                        self.name,
                        self.log_tail()
                    );
                }
                return Ok(status);
            }
            if start.elapsed() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!(
                    "node {} did not stop within {deadline:?}\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The lines of the node's log after its first `from` bytes that contain `needle`.
    pub fn log_since(&self, from: u64, needle: &str) -> Vec<String> {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let start = usize::try_from(from).unwrap_or(usize::MAX).min(text.len());
        String::from_utf8_lossy(&text[start..])
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// The node's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        std::fs::read_to_string(&self.log)
            .map(|t| t.contains(needle))
            .unwrap_or(false)
    }

    /// The last lines of the node's log, and any panic or error before them.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(40);
        let earlier: Vec<&str> = lines[..start]
            .iter()
            .filter(|l| l.contains("panicked") || l.contains("ERROR"))
            .take(10)
            .copied()
            .collect();
        let tail = lines[start..].join("\n");
        format!(
            "first errors in {}:\n{}\nlast lines:\n{tail}",
            self.log.display(),
            earlier.join("\n")
        )
    }

    pub async fn client(&self) -> anyhow::Result<AdminClient<Channel>> {
        sluice::cli::sql::connect(&self.address).await
    }

    /// Runs one statement.
    pub async fn sql(&self, statement: &str) -> Result<ExecuteResponse, tonic::Status> {
        let mut client = self
            .client()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        client
            .execute(ExecuteRequest {
                sql: statement.to_string(),
                ..ExecuteRequest::default()
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Runs a script of statements, failing on the first error.
    pub async fn script(&self, text: &str) -> anyhow::Result<()> {
        for statement in sluice::sql::split_statements(text)? {
            self.sql(&statement)
                .await
                .map_err(|s| anyhow::anyhow!("{}: {}", statement, s.message()))?;
        }
        Ok(())
    }

    /// A query's rows as strings.
    pub async fn rows(&self, query: &str) -> anyhow::Result<Vec<Vec<String>>> {
        let response = self
            .sql(query)
            .await
            .map_err(|s| anyhow::anyhow!("{query}: {}", s.message()))?;
        let result = response
            .result
            .with_context(|| format!("{query}: no result set"))?;
        Ok(result.rows.into_iter().map(|r| r.values).collect())
    }

    /// A query that returns one number.
    pub async fn number(&self, query: &str) -> anyhow::Result<u64> {
        let rows = self.rows(query).await?;
        let v = rows
            .first()
            .and_then(|r| r.first())
            .with_context(|| format!("{query}: empty result"))?;
        v.parse()
            .with_context(|| format!("{query}: not a number: {v}"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
