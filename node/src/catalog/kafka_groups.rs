//! Which Kafka table reads a partition when tables share a consumer group.
//!
//! In ClickHouse every Kafka table joins its `kafka_group_name` with `kafka_num_consumers`
//! consumers, and Kafka's group coordinator hands each partition to exactly one member:
//! tables that share a group split a topic's partitions, tables in different groups each
//! read all of it. Sluice assigns partitions itself (its positions live with the data,
//! not with the group), so it makes the same split here, deterministically from the
//! catalog alone: every node that applies the same catalog reaches the same answer, and a
//! partition changes hands only when the group's membership changes.
//!
//! The members of a group for a topic are its consuming Kafka tables that read the topic,
//! in name order, each counted `kafka_num_consumers` times; partition `p` goes to member
//! `p mod members` (Kafka's round-robin assignor over the same members).

use std::collections::BTreeMap;

use super::{KafkaSettings, TableDef};

/// The split of every shared (group, topic), computed once from the consuming tables.
#[derive(Debug, Default)]
pub struct GroupShares {
    /// Each table's group.
    group_of: BTreeMap<String, String>,
    /// Per (group, topic): its member tables in name order with their weights.
    members: BTreeMap<(String, String), Vec<(String, u64)>>,
}

impl GroupShares {
    pub fn new<'a>(consuming: impl IntoIterator<Item = (&'a TableDef, &'a KafkaSettings)>) -> Self {
        let mut shares = GroupShares::default();
        for (table, settings) in consuming {
            shares
                .group_of
                .insert(table.name.clone(), settings.group_name.clone());
            for topic in &settings.topic_list {
                shares
                    .members
                    .entry((settings.group_name.clone(), topic.clone()))
                    .or_default()
                    .push((table.name.clone(), settings.num_consumers.max(1)));
            }
        }
        for members in shares.members.values_mut() {
            members.sort();
        }
        shares
    }

    /// Whether `table` reads `partition` of `topic`. A table the shares do not know (not
    /// consuming) reads nothing.
    pub fn reads(&self, table: &str, topic: &str, partition: i32) -> bool {
        self.reader(table, topic, partition)
            .is_some_and(|reader| reader == table)
    }

    /// The table of `table`'s group that reads `partition` of `topic`.
    pub fn reader(&self, table: &str, topic: &str, partition: i32) -> Option<&str> {
        let group = self.group_of.get(table)?;
        let members = self.members.get(&(group.clone(), topic.to_string()))?;
        let total: u64 = members.iter().map(|(_, weight)| weight).sum();
        let mut slot = u64::try_from(partition).ok()? % total.max(1);
        for (name, weight) in members {
            if slot < *weight {
                return Some(name);
            }
            slot -= weight;
        }
        None
    }

    /// The other tables of `table`'s group that read `topic`: where a partition's
    /// position was kept before it came to `table`.
    pub fn group_peers<'a>(&'a self, table: &'a str, topic: &str) -> impl Iterator<Item = &'a str> {
        self.group_of
            .get(table)
            .and_then(|group| self.members.get(&(group.clone(), topic.to_string())))
            .into_iter()
            .flatten()
            .map(|(name, _)| name.as_str())
            .filter(move |name| *name != table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Engine;

    fn table(name: &str, group: &str, topics: &[&str], consumers: u64) -> TableDef {
        let mut settings = KafkaSettings::for_tests();
        settings.group_name = group.into();
        settings.topic_list = topics.iter().map(|t| t.to_string()).collect();
        settings.num_consumers = consumers;
        TableDef {
            name: name.into(),
            columns: vec![],
            engine: Engine::Kafka(Box::new(settings)),
            detached: false,
            layout: Default::default(),
        }
    }

    fn shares(tables: &[TableDef]) -> GroupShares {
        GroupShares::new(
            tables
                .iter()
                .filter_map(|t| t.kafka().map(|settings| (t, settings))),
        )
    }

    fn readers(shares: &GroupShares, table: &str, topic: &str, partitions: i32) -> Vec<String> {
        (0..partitions)
            .map(|p| shares.reader(table, topic, p).unwrap_or("-").to_string())
            .collect()
    }

    #[test]
    fn tables_of_one_group_split_the_partitions_and_other_groups_read_all() {
        let tables = [
            table("b", "g", &["t"], 1),
            table("a", "g", &["t"], 1),
            table("c", "other", &["t"], 1),
        ];
        let s = shares(&tables);
        assert_eq!(readers(&s, "a", "t", 4), ["a", "b", "a", "b"]);
        assert_eq!(readers(&s, "b", "t", 4), ["a", "b", "a", "b"]);
        assert!((0..4).all(|p| s.reads("c", "t", p)));
        // Every partition has exactly one reader in the group.
        for p in 0..4 {
            assert_eq!(["a", "b"].iter().filter(|t| s.reads(t, "t", p)).count(), 1);
        }
        assert_eq!(s.group_peers("a", "t").collect::<Vec<_>>(), ["b"]);
        assert_eq!(s.group_peers("c", "t").count(), 0);
    }

    #[test]
    fn a_topic_only_one_table_of_the_group_reads_is_all_its_own() {
        let tables = [table("a", "g", &["t", "u"], 1), table("b", "g", &["t"], 1)];
        let s = shares(&tables);
        assert!((0..3).all(|p| s.reads("a", "u", p)));
        assert_eq!(readers(&s, "b", "t", 2), ["a", "b"]);
        assert!(!s.reads("b", "u", 0));
        assert!(!s.reads("unknown", "t", 0));
    }

    #[test]
    fn kafka_num_consumers_weighs_a_tables_share() {
        let tables = [table("a", "g", &["t"], 3), table("b", "g", &["t"], 1)];
        let s = shares(&tables);
        assert_eq!(
            readers(&s, "a", "t", 8),
            ["a", "a", "a", "b", "a", "a", "a", "b"]
        );
    }
}
