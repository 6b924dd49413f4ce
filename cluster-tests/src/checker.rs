//! The invariant checker of the chaos tests, after Jepsen's Kafka checker: every produced
//! (partition, offset) is stored exactly once in every replica, nothing else is stored, and
//! the replicas agree. It has negative controls in its unit tests: a planted duplicate, a
//! gap or a diverging replica must make it fail.

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
}
