//! The invariant checker of the chaos tests, after Jepsen's Kafka checker: every produced
//! (partition, offset) is stored exactly once in every replica, nothing else is stored, and
//! the replicas agree; and, from the writer log of each replica, at most one consumer held
//! a valid assignment epoch for a partition at any time. It has negative controls in its
//! unit tests: a planted duplicate, a gap, a diverging replica, a stale epoch's write or
//! two writers of one epoch must make it fail.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A message's place in its topic.
pub type Position = (i32, i64);

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Produced but missing, per replica.
    pub lost: BTreeMap<String, Vec<Position>>,
    /// Stored more than once, with the count, per replica.
    pub duplicated: BTreeMap<String, Vec<(Position, usize)>>,
    /// Stored but never produced, per replica.
    pub unexpected: BTreeMap<String, Vec<Position>>,
    /// Replicas whose rows differ from the first replica's.
    pub diverged: Vec<String>,
    pub produced: usize,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.lost.values().all(Vec::is_empty)
            && self.duplicated.values().all(Vec::is_empty)
            && self.unexpected.values().all(Vec::is_empty)
            && self.diverged.is_empty()
    }

    pub fn lost_count(&self) -> usize {
        self.lost.values().map(Vec::len).max().unwrap_or(0)
    }

    pub fn duplicated_count(&self) -> usize {
        self.duplicated
            .values()
            .map(|d| d.iter().map(|(_, n)| n - 1).sum::<usize>())
            .max()
            .unwrap_or(0)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "produced {} messages", self.produced)?;
        for (replica, lost) in &self.lost {
            if !lost.is_empty() {
                writeln!(
                    f,
                    "{replica}: {} lost, first {:?}",
                    lost.len(),
                    &lost[..lost.len().min(5)]
                )?;
            }
        }
        for (replica, dups) in &self.duplicated {
            if !dups.is_empty() {
                writeln!(
                    f,
                    "{replica}: {} duplicated, first {:?}",
                    dups.len(),
                    &dups[..dups.len().min(5)]
                )?;
            }
        }
        for (replica, extra) in &self.unexpected {
            if !extra.is_empty() {
                writeln!(
                    f,
                    "{replica}: {} never produced, first {:?}",
                    extra.len(),
                    &extra[..extra.len().min(5)]
                )?;
            }
        }
        if !self.diverged.is_empty() {
            writeln!(
                f,
                "replicas that differ from the first: {:?}",
                self.diverged
            )?;
        }
        Ok(())
    }
}

/// Checks what each replica stored against what was produced.
pub fn check(produced: &BTreeSet<Position>, replicas: &[(String, Vec<Position>)]) -> Report {
    let mut report = Report {
        produced: produced.len(),
        ..Report::default()
    };
    let mut first: Option<BTreeMap<Position, usize>> = None;
    for (name, rows) in replicas {
        let mut counts: BTreeMap<Position, usize> = BTreeMap::new();
        for p in rows {
            *counts.entry(*p).or_default() += 1;
        }
        report.lost.insert(
            name.clone(),
            produced
                .iter()
                .filter(|p| !counts.contains_key(p))
                .copied()
                .collect(),
        );
        report.duplicated.insert(
            name.clone(),
            counts
                .iter()
                .filter(|(_, n)| **n > 1)
                .map(|(p, n)| (*p, *n))
                .collect(),
        );
        report.unexpected.insert(
            name.clone(),
            counts
                .keys()
                .filter(|p| !produced.contains(p))
                .copied()
                .collect(),
        );
        match &first {
            None => first = Some(counts),
            Some(f) if *f != counts => report.diverged.push(name.clone()),
            Some(_) => {}
        }
    }
    report
}

/// One applied block of a partition, as `system.writer_log` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterEntry {
    pub log_index: u64,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub node: u64,
    pub epoch: u64,
}

/// Fencing, from one replica's writer log: per partition, in log order, the epochs never
/// go back (a write under an epoch older than one already seen is a zombie's), one epoch
/// has one node, and each block starts right after the one before. Returns what broke.
pub fn check_fencing(log: &[WriterEntry]) -> Vec<String> {
    let mut by_partition: BTreeMap<i32, Vec<&WriterEntry>> = BTreeMap::new();
    for e in log {
        by_partition.entry(e.partition).or_default().push(e);
    }
    let mut broken = Vec::new();
    for (partition, mut entries) in by_partition {
        entries.sort_by_key(|e| e.log_index);
        let mut owners: BTreeMap<u64, u64> = BTreeMap::new();
        for pair in entries.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if b.epoch < a.epoch {
                broken.push(format!(
                    "partition {partition}: log index {} written under epoch {} after epoch {} wrote at {}",
                    b.log_index, b.epoch, a.epoch, a.log_index
                ));
            }
            if b.first_offset != a.last_offset + 1 {
                broken.push(format!(
                    "partition {partition}: block at log index {} starts at offset {}, the one before ended at {}",
                    b.log_index, b.first_offset, a.last_offset
                ));
            }
        }
        for e in &entries {
            match owners.get(&e.epoch) {
                Some(node) if *node != e.node => broken.push(format!(
                    "partition {partition}: epoch {} written by nodes {node} and {}",
                    e.epoch, e.node
                )),
                _ => {
                    owners.insert(e.epoch, e.node);
                }
            }
        }
    }
    broken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn produced() -> BTreeSet<Position> {
        (0..3).flat_map(|p| (0..100).map(move |o| (p, o))).collect()
    }

    fn stored() -> Vec<Position> {
        produced().into_iter().collect()
    }

    #[test]
    fn a_clean_history_passes() {
        let r = check(
            &produced(),
            &[("a".into(), stored()), ("b".into(), stored())],
        );
        assert!(r.ok(), "{r}");
    }

    #[test]
    fn a_planted_duplicate_fails() {
        let mut rows = stored();
        rows.push((1, 42));
        let r = check(
            &produced(),
            &[("a".into(), rows.clone()), ("b".into(), rows)],
        );
        assert!(!r.ok());
        assert_eq!(r.duplicated_count(), 1);
        assert_eq!(r.duplicated["a"], vec![((1, 42), 2)]);
    }

    #[test]
    fn a_planted_gap_fails() {
        let rows: Vec<Position> = stored().into_iter().filter(|p| *p != (2, 7)).collect();
        let r = check(&produced(), &[("a".into(), rows)]);
        assert!(!r.ok());
        assert_eq!(r.lost["a"], vec![(2, 7)]);
        assert_eq!(r.lost_count(), 1);
    }

    #[test]
    fn a_diverging_replica_fails() {
        let mut other = stored();
        other.retain(|p| *p != (0, 0));
        other.push((0, 0));
        other.push((0, 1));
        let r = check(&produced(), &[("a".into(), stored()), ("b".into(), other)]);
        assert!(!r.ok());
        assert_eq!(r.diverged, vec!["b".to_string()]);
    }

    #[test]
    fn rows_never_produced_fail() {
        let mut rows = stored();
        rows.push((5, 0));
        let r = check(&produced(), &[("a".into(), rows)]);
        assert!(!r.ok());
        assert_eq!(r.unexpected["a"], vec![(5, 0)]);
    }

    fn writes(items: &[(u64, i64, i64, u64, u64)]) -> Vec<WriterEntry> {
        items
            .iter()
            .map(
                |&(log_index, first_offset, last_offset, node, epoch)| WriterEntry {
                    log_index,
                    partition: 0,
                    first_offset,
                    last_offset,
                    node,
                    epoch,
                },
            )
            .collect()
    }

    #[test]
    fn a_clean_handover_passes_fencing() {
        let log = writes(&[
            (10, 0, 99, 1, 5),
            (12, 100, 199, 1, 5),
            (20, 200, 299, 2, 18),
        ]);
        assert_eq!(check_fencing(&log), Vec::<String>::new());
    }

    #[test]
    fn a_zombie_write_under_a_stale_epoch_fails_fencing() {
        let log = writes(&[
            (10, 0, 99, 1, 5),
            (20, 100, 199, 2, 18),
            (21, 200, 299, 1, 5),
        ]);
        let broken = check_fencing(&log);
        assert!(
            broken
                .iter()
                .any(|b| b.contains("under epoch 5 after epoch 18")),
            "{broken:?}"
        );
    }

    #[test]
    fn two_writers_of_one_epoch_or_an_overlap_fail_fencing() {
        let log = writes(&[(10, 0, 99, 1, 5), (11, 100, 199, 2, 5)]);
        assert!(check_fencing(&log)
            .iter()
            .any(|b| b.contains("written by nodes 1 and 2")));
        let log = writes(&[(10, 0, 99, 1, 5), (11, 50, 149, 1, 5)]);
        assert!(check_fencing(&log)
            .iter()
            .any(|b| b.contains("starts at offset 50")));
    }
}
