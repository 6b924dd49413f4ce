//! GitHub events with the exact schema of the guide's `github_queue` table.
//!
//! `event(seed, index)` is a pure function, so a test can recompute any produced event
//! and compare it with the stored row, column by column, without keeping a copy.
//! `created_at` grows strictly with the index, which makes it a unique row key.

use rand::seq::IndexedRandom as _;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// The 25 columns of the guide's `github_queue`, in its order.
pub const GITHUB_COLUMNS: [&str; 25] = [
    "file_time",
    "event_type",
    "actor_login",
    "repo_name",
    "created_at",
    "updated_at",
    "action",
    "comment_id",
    "path",
    "ref",
    "ref_type",
    "creator_user_login",
    "number",
    "title",
    "labels",
    "state",
    "assignee",
    "assignees",
    "closed_at",
    "merged_at",
    "merge_commit_sha",
    "requested_reviewers",
    "merged_by",
    "review_comments",
    "member_login",
];

/// ClickHouse's DateTime default, which the guide's data uses for "never".
pub const NEVER: &str = "1970-01-01 00:00:00";

/// 2011-02-12 00:00:00 UTC, the first hour of the GH Archive data the guide loads.
const EPOCH_START: i64 = 1_297_468_800;

/// One event; field order is the guide's column order, so the JSON reads like its data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GithubEvent {
    pub file_time: String,
    pub event_type: &'static str,
    pub actor_login: String,
    pub repo_name: String,
    pub created_at: String,
    pub updated_at: String,
    pub action: &'static str,
    pub comment_id: u64,
    pub path: String,
    #[serde(rename = "ref")]
    pub ref_: String,
    pub ref_type: &'static str,
    pub creator_user_login: String,
    pub number: u32,
    pub title: String,
    pub labels: Vec<String>,
    pub state: &'static str,
    pub assignee: String,
    pub assignees: Vec<String>,
    pub closed_at: String,
    pub merged_at: String,
    pub merge_commit_sha: String,
    pub requested_reviewers: Vec<String>,
    pub merged_by: String,
    pub review_comments: u32,
    pub member_login: String,
}

impl GithubEvent {
    /// The event as one JSONEachRow line (no trailing newline).
    pub fn json_line(&self) -> String {
        // Serializing a struct of strings, numbers and string vectors cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Event types with weights close to GH Archive's mix (push-heavy, a long tail).
const EVENT_TYPES: [(&str, u32); 22] = [
    ("PushEvent", 480),
    ("CreateEvent", 110),
    ("WatchEvent", 100),
    ("IssueCommentEvent", 70),
    ("PullRequestEvent", 50),
    ("IssuesEvent", 45),
    ("ForkEvent", 40),
    ("DeleteEvent", 20),
    ("GollumEvent", 18),
    ("PullRequestReviewCommentEvent", 15),
    ("CommitCommentEvent", 8),
    ("MemberEvent", 8),
    ("ReleaseEvent", 6),
    ("PullRequestReviewEvent", 6),
    ("PublicEvent", 3),
    ("GistEvent", 3),
    ("FollowEvent", 3),
    ("DownloadEvent", 2),
    ("SponsorshipEvent", 1),
    ("ForkApplyEvent", 1),
    ("TeamAddEvent", 1),
    ("Event", 1),
];

const FIRST_NAMES: [&str; 16] = [
    "alice", "bob", "carol", "dmitri", "eve", "farah", "gustavo", "hiro", "ines", "jamal", "kenji",
    "lena", "mateo", "nadia", "olu", "priya",
];
const SUFFIXES: [&str; 8] = ["", "-dev", "42", "_gh", "-io", "x", "-oss", "1987"];
const PROJECTS: [&str; 16] = [
    "rails",
    "linux",
    "node",
    "django",
    "homebrew",
    "vim",
    "kafka",
    "clickhouse",
    "rust",
    "react",
    "tensorflow",
    "spark",
    "redis",
    "nginx",
    "emacs",
    "jekyll",
];
const LABELS: [&str; 10] = [
    "bug",
    "enhancement",
    "documentation",
    "good first issue",
    "help wanted",
    "question",
    "wontfix",
    "duplicate",
    "performance",
    "needs-triage",
];
const TITLES: [&str; 16] = [
    "Fix crash on startup",
    "Add support for UTF-8 file names",
    "Update README.md",
    "Memory leak in parser",
    "Improve error message for missing config",
    "Bump dependency versions",
    "修复 Windows 下的路径问题",
    "Ошибка при сборке на macOS",
    "Añadir traducción al español",
    "Corriger l'encodage des caractères accentués",
    "ドキュメントの誤字を修正",
    "Unterstützung für Umlaute: äöü ß",
    "🚀 Speed up test suite",
    "Handle \"quoted\" arguments in shell wrapper",
    "Remove deprecated API",
    "Προσθήκη ελληνικής μετάφρασης",
];
const PATHS: [&str; 6] = [
    "src/main.rs",
    "lib/parser.rb",
    "README.md",
    "docs/índice.md",
    "app/models/user.py",
    "include/util.h",
];
const BRANCHES: [&str; 6] = [
    "master",
    "main",
    "develop",
    "feature/login",
    "fix-typo",
    "gh-pages",
];

fn datetime(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| NEVER.to_string())
}

fn login(rng: &mut ChaCha8Rng) -> String {
    let first = FIRST_NAMES.choose(rng).copied().unwrap_or("user");
    let suffix = SUFFIXES.choose(rng).copied().unwrap_or("");
    format!("{first}{suffix}{}", rng.random_range(0..500))
}

fn pick_event_type(rng: &mut ChaCha8Rng) -> &'static str {
    let total: u32 = EVENT_TYPES.iter().map(|(_, w)| w).sum();
    let mut roll = rng.random_range(0..total);
    for (name, weight) in EVENT_TYPES {
        if roll < weight {
            return name;
        }
        roll -= weight;
    }
    "PushEvent"
}

fn some_labels(rng: &mut ChaCha8Rng, max: usize) -> Vec<String> {
    let n = rng.random_range(0..=max);
    LABELS
        .choose_multiple(rng, n)
        .map(|s| (*s).to_string())
        .collect()
}

fn logins(rng: &mut ChaCha8Rng, max: usize) -> Vec<String> {
    let n = rng.random_range(0..=max);
    (0..n).map(|_| login(rng)).collect()
}

fn sha(rng: &mut ChaCha8Rng) -> String {
    let bytes: [u8; 20] = rng.random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `index`-th event of the stream named by `seed`.
pub fn event(seed: u64, index: u64) -> GithubEvent {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);

    // Strictly increasing and unique: 5 s per event, jitter inside the slot.
    let created = EPOCH_START + (index as i64) * 5 + rng.random_range(0..5);
    let event_type = pick_event_type(&mut rng);
    let actor_login = login(&mut rng);
    let owner = login(&mut rng);
    let project = PROJECTS.choose(&mut rng).copied().unwrap_or("repo");
    let mut e = GithubEvent {
        file_time: datetime(created - created.rem_euclid(3600)),
        event_type,
        actor_login,
        repo_name: format!("{owner}/{project}"),
        created_at: datetime(created),
        updated_at: NEVER.to_string(),
        action: "none",
        comment_id: 0,
        path: String::new(),
        ref_: String::new(),
        ref_type: "none",
        creator_user_login: String::new(),
        number: 0,
        title: String::new(),
        labels: Vec::new(),
        state: "none",
        assignee: String::new(),
        assignees: Vec::new(),
        closed_at: NEVER.to_string(),
        merged_at: NEVER.to_string(),
        merge_commit_sha: String::new(),
        requested_reviewers: Vec::new(),
        merged_by: String::new(),
        review_comments: 0,
        member_login: String::new(),
    };
    match event_type {
        "PushEvent" => {
            e.ref_ = format!(
                "refs/heads/{}",
                BRANCHES.choose(&mut rng).copied().unwrap_or("main")
            );
        }
        "CreateEvent" | "DeleteEvent" => {
            let kind = *["branch", "tag", "repository"]
                .choose(&mut rng)
                .unwrap_or(&"branch");
            e.ref_type = kind;
            if kind != "repository" {
                e.ref_ = BRANCHES
                    .choose(&mut rng)
                    .copied()
                    .unwrap_or("main")
                    .to_string();
            }
        }
        "WatchEvent" => e.action = "started",
        "IssuesEvent" | "PullRequestEvent" => {
            let is_pr = event_type == "PullRequestEvent";
            e.action = *[
                "opened",
                "closed",
                "reopened",
                "labeled",
                "assigned",
                "synchronize",
            ]
            .choose(&mut rng)
            .unwrap_or(&"opened");
            e.number = rng.random_range(1..20_000);
            e.title = TITLES
                .choose(&mut rng)
                .copied()
                .unwrap_or_default()
                .to_string();
            e.labels = some_labels(&mut rng, 3);
            e.creator_user_login = login(&mut rng);
            e.updated_at = datetime(created);
            e.assignees = logins(&mut rng, 2);
            e.assignee = e.assignees.first().cloned().unwrap_or_default();
            if e.action == "closed" {
                e.state = "closed";
                e.closed_at = datetime(created);
                if is_pr && rng.random_bool(0.7) {
                    e.merged_at = datetime(created);
                    e.merged_by = login(&mut rng);
                    e.merge_commit_sha = sha(&mut rng);
                }
            } else {
                e.state = "open";
            }
            if is_pr {
                e.requested_reviewers = logins(&mut rng, 3);
                e.review_comments = rng.random_range(0..40);
            }
        }
        "IssueCommentEvent" | "CommitCommentEvent" | "PullRequestReviewCommentEvent" => {
            e.action = "created";
            e.comment_id = rng.random_range(1_000_000..2_000_000_000);
            e.number = rng.random_range(1..20_000);
            e.title = TITLES
                .choose(&mut rng)
                .copied()
                .unwrap_or_default()
                .to_string();
            e.creator_user_login = login(&mut rng);
            e.updated_at = datetime(created + rng.random_range(0..600));
            e.labels = some_labels(&mut rng, 2);
            if event_type != "IssueCommentEvent" {
                e.path = PATHS
                    .choose(&mut rng)
                    .copied()
                    .unwrap_or_default()
                    .to_string();
            }
        }
        "PullRequestReviewEvent" => {
            e.action = "created";
            e.number = rng.random_range(1..20_000);
            e.review_comments = rng.random_range(0..10);
        }
        "MemberEvent" => {
            e.action = "added";
            e.member_login = login(&mut rng);
        }
        "ReleaseEvent" => {
            e.action = "published";
            e.ref_ = format!(
                "v{}.{}.{}",
                rng.random_range(0..5),
                rng.random_range(0..20),
                rng.random_range(0..10)
            );
            e.ref_type = "tag";
        }
        "GollumEvent" => e.action = *["created", "edited"].choose(&mut rng).unwrap_or(&"edited"),
        "ForkEvent" => e.action = "fork",
        _ => {}
    }
    e
}

/// A message a JSONEachRow reader must refuse, numbered so each is distinct.
pub fn malformed_message(k: u64) -> String {
    match k % 4 {
        0 => format!("{{\"event_type\": \"PushEvent\", \"created_at\": broken-{k}"),
        1 => format!("not json at all #{k}"),
        2 => format!("{{\"event_type\": \"NoSuchEvent{k}\"}}"),
        _ => format!("{{\"number\": \"not-a-number-{k}\"}}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_and_index_give_the_same_event() {
        assert_eq!(event(7, 123), event(7, 123));
        assert_ne!(event(7, 123), event(8, 123));
    }

    #[test]
    fn created_at_strictly_increases() {
        let times: Vec<String> = (0..2000).map(|i| event(1, i).created_at).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(event(1, 0).created_at.get(..10), Some("2011-02-12"));
    }

    #[test]
    fn json_has_the_guides_columns_in_order() {
        let line = event(3, 5).json_line();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        let keys: Vec<&str> = value
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut expected = GITHUB_COLUMNS.to_vec();
        expected.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, expected);
    }

    #[test]
    fn a_few_thousand_events_cover_the_interesting_cases() {
        let events: Vec<GithubEvent> = (0..5000).map(|i| event(42, i)).collect();
        let types: std::collections::HashSet<_> = events.iter().map(|e| e.event_type).collect();
        assert!(types.len() >= 15, "{types:?}");
        assert!(events.iter().any(|e| !e.title.is_ascii()));
        assert!(events.iter().any(|e| e.labels.is_empty()));
        assert!(events.iter().any(|e| e.labels.len() > 1));
        assert!(events.iter().any(|e| e.merged_at != NEVER));
        assert!(events.iter().any(|e| e.closed_at == NEVER));
        let pushes = events
            .iter()
            .filter(|e| e.event_type == "PushEvent")
            .count();
        assert!((2000..2900).contains(&pushes), "{pushes}");
    }
}
