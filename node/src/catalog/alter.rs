//! `ALTER TABLE` on a stored table's columns: the pure rules of what may change and how a
//! change is applied to a `TableDef`, run by `Catalog::apply` like every other command.
//! Must not import the query engine, `sled`, `actix` or `rdkafka`.
//!
//! Invariant: a column keeps the name it was first stored under in its parts (its stored
//! name) through renames, and a dropped column's stored name is never given to another
//! column. Parts are immutable, so this is what lets old parts be read right: a renamed
//! column finds its old values, and a column added later under a dropped (or renamed-away)
//! name reads its default in old parts, never the old column's values.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{CatalogError, Column, Engine, KafkaSettings, TableDef, ViewDef};
use crate::catalog::ChType;

/// Arrow field metadata: the stored name of a column whose current name differs.
pub const STORED_NAME_KEY: &str = "sluice.stored_name";
/// Arrow field metadata: the value (as text, cast to the column's type) rows stored before
/// the column was added read as.
pub const FILL_KEY: &str = "sluice.fill";

/// What ALTERs left behind that the columns alone do not say. Empty for a table never
/// altered, and then not even serialized, so old catalogs and snapshots read unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLayout {
    /// Current name -> the name its values carry in parts, where the two differ.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stored_names: BTreeMap<String, String>,
    /// Stored names no current column reads (dropped columns).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub retired: BTreeSet<String>,
    /// Stored name -> the value a column added by ALTER reads as in older parts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fills: BTreeMap<String, String>,
    /// Stored name -> the column's comment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub comments: BTreeMap<String, String>,
}

impl StoredLayout {
    pub fn is_empty(&self) -> bool {
        self == &StoredLayout::default()
    }
}

/// Where `ADD COLUMN` puts the column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnPosition {
    Last,
    First,
    After(String),
}

/// One change of an `ALTER TABLE`, typed; the fill of an added column is computed by the
/// node that ran the statement, so applying the command is deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlterAction {
    AddColumn {
        column: Column,
        if_not_exists: bool,
        /// What rows stored before read as: the DEFAULT's value, or the type's default for
        /// a column that cannot be NULL; none for a Nullable column (NULL).
        fill: Option<String>,
        position: ColumnPosition,
    },
    DropColumn {
        name: String,
        if_exists: bool,
    },
    RenameColumn {
        from: String,
        to: String,
        if_exists: bool,
    },
    ModifyColumn {
        name: String,
        ty: ChType,
        if_exists: bool,
    },
    CommentColumn {
        name: String,
        comment: String,
        if_exists: bool,
    },
    /// `MODIFY SETTING name = value` (`Some`) or `RESET SETTING name` (`None`) of a Kafka
    /// table, one of `LIVE_SETTINGS`.
    ModifySetting {
        name: String,
        value: Option<String>,
    },
}

/// The Kafka settings a live table takes a new value of: how blocks are cut and how bad
/// messages are handled, which take effect at the next block; the others say what the
/// table reads or where its positions live.
pub const LIVE_SETTINGS: &[&str] = &[
    "kafka_max_block_size",
    "kafka_max_block_bytes",
    "kafka_flush_interval_ms",
    "kafka_poll_timeout_ms",
    "kafka_skip_broken_messages",
    "kafka_max_rows_per_message",
    "kafka_commit_every_batch",
];

impl AlterAction {
    /// The statement's words, for errors.
    pub fn describe(&self) -> String {
        match self {
            AlterAction::AddColumn { column, .. } => format!("ADD COLUMN {}", column.name),
            AlterAction::DropColumn { name, .. } => format!("DROP COLUMN {name}"),
            AlterAction::RenameColumn { from, to, .. } => format!("RENAME COLUMN {from} TO {to}"),
            AlterAction::ModifyColumn { name, ty, .. } => format!("MODIFY COLUMN {name} {ty}"),
            AlterAction::CommentColumn { name, .. } => format!("COMMENT COLUMN {name}"),
            AlterAction::ModifySetting {
                name,
                value: Some(value),
            } => format!("MODIFY SETTING {name} = {value}"),
            AlterAction::ModifySetting { name, value: None } => format!("RESET SETTING {name}"),
        }
    }
}

/// Whether values of type `from` can be read as `to` without loss: ClickHouse's widening
/// conversions that need no rewrite of the stored parts.
pub fn widens(from: &ChType, to: &ChType) -> bool {
    use ChType::*;
    if from == to {
        return true;
    }
    match (from, to) {
        (Nullable(a), Nullable(b)) => widens(a, b),
        (Nullable(_), _) => false,
        (a, Nullable(b)) => widens(a, b),
        (String, LowCardinality(b)) | (LowCardinality(b), String) => **b == String,
        (Float32, Float64) => true,
        _ => match (int_width(from), int_width(to)) {
            // Signed to wider signed; unsigned to wider unsigned or to wider signed.
            (Some((fs, fw)), Some((ts, tw))) => tw > fw && (fs == ts || (!fs && ts)),
            _ => false,
        },
    }
}

/// (signed, bits) of an integer type.
fn int_width(ty: &ChType) -> Option<(bool, u8)> {
    Some(match ty {
        ChType::Int8 => (true, 8),
        ChType::Int16 => (true, 16),
        ChType::Int32 => (true, 32),
        ChType::Int64 => (true, 64),
        ChType::UInt8 => (false, 8),
        ChType::UInt16 => (false, 16),
        ChType::UInt32 => (false, 32),
        ChType::UInt64 => (false, 64),
        _ => return None,
    })
}

/// The table after `actions`, in order, or the first refusal; `Ok(None)` when every
/// action was skipped by its IF [NOT] EXISTS. `views` are the catalog's views, for the
/// columns they read or write.
pub fn apply_actions(
    def: &TableDef,
    actions: &[AlterAction],
    views: &[&ViewDef],
) -> Result<Option<TableDef>, CatalogError> {
    if let Some(settings) = def.kafka() {
        // The compiled schema was made for the columns at CREATE.
        let columns_change = actions.iter().any(|a| {
            !matches!(
                a,
                AlterAction::CommentColumn { .. } | AlterAction::ModifySetting { .. }
            )
        });
        if columns_change && settings.format.needs_schema() {
            return Err(CatalogError::AlterRefused {
                table: def.name.clone(),
                action: actions.first().map(AlterAction::describe).unwrap_or_default(),
                reason: format!(
                    "format {} reads with the kafka_schema compiled for the columns at CREATE; DETACH, DROP and CREATE the table again",
                    settings.format.name()
                ),
            });
        }
    }
    // Such a view runs over the table's new blocks as they were written, so a block
    // written before a change would not match the columns the view is planned against.
    let structural = actions
        .iter()
        .any(|a| !matches!(a, AlterAction::CommentColumn { .. }));
    if let Some(view) = views.iter().find(|v| v.source == def.name) {
        if structural && def.kafka().is_none() {
            return Err(CatalogError::AlterRefused {
                table: def.name.clone(),
                action: actions.first().map(AlterAction::describe).unwrap_or_default(),
                reason: format!(
                    "view {} sends the table's new rows to Kafka; drop the view, ALTER, then create it again",
                    view.name
                ),
            });
        }
    }
    let mut out = def.clone();
    let mut changed = false;
    for action in actions {
        changed |= apply_one(&mut out, action, views)?;
    }
    Ok(changed.then_some(out))
}

fn refused(def: &TableDef, action: &AlterAction, reason: String) -> CatalogError {
    CatalogError::AlterRefused {
        table: def.name.clone(),
        action: action.describe(),
        reason,
    }
}

/// A view that uses `column` of `def`: one that writes it (its target is the table) or
/// names it in its query (its source is the table).
fn view_using<'a>(def: &TableDef, column: &str, views: &[&'a ViewDef]) -> Option<&'a ViewDef> {
    views.iter().copied().find(|v| {
        (v.target == def.name && v.output_columns.iter().any(|c| c == column))
            || (v.source == def.name && mentions(&v.query, column))
    })
}

/// Whether `query` has `word` as a whole identifier (quoted or not): a strict test, so a
/// column a view may read is never dropped or renamed under it.
fn mentions(query: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    query.match_indices(word).any(|(at, _)| {
        let before = query[..at].chars().next_back();
        let after = query[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// Sets one of `LIVE_SETTINGS` of `settings` to `value` (its default for `None`), parsed
/// and checked as CREATE parses it.
fn set_live_setting(
    settings: &mut KafkaSettings,
    name: &str,
    value: Option<&str>,
) -> Result<(), String> {
    if !LIVE_SETTINGS.contains(&name) {
        return Err(format!(
            "{name} cannot change on a live table (it says what the table reads, how, or where its positions live); the settings that can: {}",
            LIVE_SETTINGS.join(", ")
        ));
    }
    // The required settings, so that `from_pairs` parses the one that changes.
    let mut pairs: Vec<(String, String)> = [
        ("kafka_broker_list", settings.broker_list.clone()),
        ("kafka_topic_list", settings.topic_list.join(",")),
        ("kafka_group_name", settings.group_name.clone()),
        ("kafka_format", "JSONEachRow".to_string()),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect();
    if let Some(value) = value {
        pairs.push((name.to_string(), value.to_string()));
    }
    let parsed = KafkaSettings::from_pairs(&pairs).map_err(|e| e.to_string())?;
    match name {
        "kafka_max_block_size" => settings.max_block_size = parsed.max_block_size,
        "kafka_max_block_bytes" => settings.max_block_bytes = parsed.max_block_bytes,
        "kafka_flush_interval_ms" => settings.flush_interval_ms = parsed.flush_interval_ms,
        "kafka_poll_timeout_ms" => settings.poll_timeout_ms = parsed.poll_timeout_ms,
        "kafka_skip_broken_messages" => settings.skip_broken_messages = parsed.skip_broken_messages,
        "kafka_max_rows_per_message" => settings.max_rows_per_message = parsed.max_rows_per_message,
        "kafka_commit_every_batch" => settings.commit_every_batch = parsed.commit_every_batch,
        other => return Err(format!("{other} is not a live setting")),
    }
    // The declaration is what a collection's ALTER resolves again and SHOW CREATE prints:
    // without the change there, either would bring the old value back.
    if let Some(declaration) = settings.declaration.as_mut() {
        declaration.overrides.retain(|(k, _)| k != name);
        declaration.settings.retain(|(k, _)| k != name);
        if let Some(value) = value {
            declaration
                .settings
                .push((name.to_string(), value.to_string()));
        }
    }
    Ok(())
}

fn stored_name(def: &TableDef, column: &str) -> String {
    def.layout
        .stored_names
        .get(column)
        .cloned()
        .unwrap_or_else(|| column.to_string())
}

/// A stored name for a new column called `name`: its own, unless parts already hold
/// values under it (a dropped column, or one renamed away).
fn fresh_stored_name(def: &TableDef, name: &str) -> String {
    let used: BTreeSet<String> = def
        .columns
        .iter()
        .map(|c| stored_name(def, &c.name))
        .chain(def.layout.retired.iter().cloned())
        .collect();
    if !used.contains(name) {
        return name.to_string();
    }
    (2u64..)
        .map(|n| format!("{name}#{n}"))
        .find(|candidate| !used.contains(candidate))
        .expect("an unbounded range has a name not in a finite set")
}

/// Applies one action; whether it changed anything. A Kafka table stores nothing, so its
/// changes leave no stored names or fills: only the columns change.
fn apply_one(
    def: &mut TableDef,
    action: &AlterAction,
    views: &[&ViewDef],
) -> Result<bool, CatalogError> {
    let kafka = def.kafka().is_some();
    let keys = def.order_by();
    let index_of = |def: &TableDef, name: &str| def.columns.iter().position(|c| c.name == name);
    let missing =
        |def: &TableDef, name: &str| refused(def, action, format!("there is no column {name}"));
    match action {
        AlterAction::AddColumn {
            column,
            if_not_exists,
            fill,
            position,
        } => {
            if index_of(def, &column.name).is_some() {
                if *if_not_exists {
                    return Ok(false);
                }
                return Err(CatalogError::DuplicateColumn {
                    table: def.name.clone(),
                    column: column.name.clone(),
                });
            }
            let at = match position {
                ColumnPosition::Last => def.columns.len(),
                ColumnPosition::First => 0,
                ColumnPosition::After(after) => {
                    index_of(def, after).ok_or_else(|| missing(def, after))? + 1
                }
            };
            if kafka {
                def.columns.insert(at, column.clone());
                return Ok(true);
            }
            let stored = fresh_stored_name(def, &column.name);
            if stored != column.name {
                def.layout
                    .stored_names
                    .insert(column.name.clone(), stored.clone());
            }
            if let Some(fill) = fill {
                def.layout.fills.insert(stored, fill.clone());
            }
            def.columns.insert(at, column.clone());
        }
        AlterAction::DropColumn { name, if_exists } => {
            let Some(at) = index_of(def, name) else {
                if *if_exists {
                    return Ok(false);
                }
                return Err(missing(def, name));
            };
            if keys.contains(name) {
                return Err(refused(
                    def,
                    action,
                    format!("{name} is in the table's ORDER BY"),
                ));
            }
            if let Some(view) = view_using(def, name, views) {
                return Err(refused(
                    def,
                    action,
                    format!(
                        "view {} uses column {name}; drop or change the view first",
                        view.name
                    ),
                ));
            }
            if def.columns.len() == 1 {
                return Err(refused(def, action, "it is the table's only column".into()));
            }
            let stored = stored_name(def, name);
            def.columns.remove(at);
            if kafka {
                def.layout.comments.remove(&stored);
                return Ok(true);
            }
            def.layout.stored_names.remove(name);
            def.layout.fills.remove(&stored);
            def.layout.comments.remove(&stored);
            def.layout.retired.insert(stored);
        }
        AlterAction::RenameColumn {
            from,
            to,
            if_exists,
        } => {
            let Some(at) = index_of(def, from) else {
                if *if_exists {
                    return Ok(false);
                }
                return Err(missing(def, from));
            };
            if index_of(def, to).is_some() {
                return Err(CatalogError::DuplicateColumn {
                    table: def.name.clone(),
                    column: to.clone(),
                });
            }
            if keys.contains(from) {
                return Err(refused(
                    def,
                    action,
                    format!("{from} is in the table's ORDER BY"),
                ));
            }
            if let Some(view) = view_using(def, from, views) {
                return Err(refused(
                    def,
                    action,
                    format!(
                        "view {} uses column {from}; drop or change the view first",
                        view.name
                    ),
                ));
            }
            if kafka {
                if let Some(comment) = def.layout.comments.remove(from) {
                    def.layout.comments.insert(to.clone(), comment);
                }
                def.columns[at].name = to.clone();
                return Ok(true);
            }
            let stored = stored_name(def, from);
            def.layout.stored_names.remove(from);
            if stored != *to {
                def.layout.stored_names.insert(to.clone(), stored);
            }
            def.columns[at].name = to.clone();
        }
        AlterAction::ModifyColumn {
            name,
            ty,
            if_exists,
        } => {
            let Some(at) = index_of(def, name) else {
                if *if_exists {
                    return Ok(false);
                }
                return Err(missing(def, name));
            };
            let from = def.columns[at].ty.clone();
            if from == *ty {
                return Ok(false);
            }
            if keys.contains(name) {
                return Err(refused(
                    def,
                    action,
                    format!("{name} is in the table's ORDER BY"),
                ));
            }
            // A Kafka table's columns only say how messages are parsed from now on.
            if !kafka && !widens(&from, ty) {
                return Err(refused(
                    def,
                    action,
                    format!("{from} cannot be read as {ty}: Sluice changes a column's type only where every stored value keeps its meaning (IntN to a wider Int, UIntN to a wider UInt or Int, Float32 to Float64, T to Nullable(T), String to or from LowCardinality(String))"),
                ));
            }
            // A filled column reads missing values as its fill by coalescing, which would
            // also turn NULLs written after the change into the fill.
            if ty.is_nullable() && def.layout.fills.contains_key(&stored_name(def, name)) {
                return Err(refused(
                    def,
                    action,
                    format!("{name} was added by ALTER with a value for older rows, which would also replace its later NULLs"),
                ));
            }
            def.columns[at].ty = ty.clone();
        }
        AlterAction::CommentColumn {
            name,
            comment,
            if_exists,
        } => {
            if index_of(def, name).is_none() {
                if *if_exists {
                    return Ok(false);
                }
                return Err(missing(def, name));
            }
            let stored = stored_name(def, name);
            if comment.is_empty() {
                def.layout.comments.remove(&stored);
            } else {
                def.layout.comments.insert(stored, comment.clone());
            }
        }
        AlterAction::ModifySetting { name, value } => {
            let Some(before) = def.kafka().cloned() else {
                return Err(refused(
                    def,
                    action,
                    "only a Kafka table's settings can change".into(),
                ));
            };
            let mut after = before.clone();
            set_live_setting(&mut after, name, value.as_deref())
                .map_err(|reason| refused(def, action, reason))?;
            let changed = after != before;
            def.engine = Engine::Kafka(Box::new(after));
            return Ok(changed);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Engine, MergeTreeSettings};

    fn table() -> TableDef {
        TableDef {
            name: "t".into(),
            columns: vec![
                Column {
                    name: "k".into(),
                    ty: ChType::UInt64,
                },
                Column {
                    name: "a".into(),
                    ty: ChType::Int32,
                },
            ],
            engine: Engine::MergeTree {
                engine_name: "MergeTree".into(),
                order_by: vec!["k".into()],
                settings: MergeTreeSettings::default(),
            },
            detached: false,
            layout: StoredLayout::default(),
        }
    }

    fn add(name: &str, ty: ChType, fill: Option<&str>) -> AlterAction {
        AlterAction::AddColumn {
            column: Column {
                name: name.into(),
                ty,
            },
            if_not_exists: false,
            fill: fill.map(str::to_string),
            position: ColumnPosition::Last,
        }
    }

    fn run(def: &TableDef, actions: &[AlterAction]) -> Result<TableDef, CatalogError> {
        apply_actions(def, actions, &[]).map(|d| d.expect("changed"))
    }

    #[test]
    fn widening_rules() {
        use ChType::*;
        let n = |t: ChType| Nullable(Box::new(t));
        let lc = |t: ChType| LowCardinality(Box::new(t));
        for (from, to) in [
            (Int8, Int64),
            (UInt8, UInt16),
            (UInt32, Int64),
            (Float32, Float64),
            (Int32, n(Int32)),
            (Int32, n(Int64)),
            (String, lc(String)),
            (lc(String), String),
        ] {
            assert!(widens(&from, &to), "{from} -> {to}");
        }
        for (from, to) in [
            (Int64, Int32),
            (Int32, UInt64),
            (UInt32, Int32),
            (Float64, Float32),
            (n(Int32), Int32),
            (Int32, String),
            (Int32, Float64),
        ] {
            assert!(!widens(&from, &to), "{from} -> {to}");
        }
    }

    #[test]
    fn rename_keeps_the_stored_name_and_a_readded_name_gets_a_fresh_one() {
        let def = run(
            &table(),
            &[
                AlterAction::RenameColumn {
                    from: "a".into(),
                    to: "b".into(),
                    if_exists: false,
                },
                add("a", ChType::Int32, Some("7")),
            ],
        )
        .expect("alter");
        assert_eq!(
            def.layout.stored_names.get("b").map(String::as_str),
            Some("a")
        );
        assert_eq!(
            def.layout.stored_names.get("a").map(String::as_str),
            Some("a#2")
        );
        assert_eq!(def.layout.fills.get("a#2").map(String::as_str), Some("7"));
        // Renaming back to its stored name needs no mapping.
        let def = run(
            &def,
            &[
                AlterAction::DropColumn {
                    name: "a".into(),
                    if_exists: false,
                },
                AlterAction::RenameColumn {
                    from: "b".into(),
                    to: "a".into(),
                    if_exists: false,
                },
            ],
        )
        .expect("alter");
        assert!(def.layout.stored_names.is_empty());
        assert!(def.layout.retired.contains("a#2"));
        // A third `a`-named column never reuses a stored name.
        let def = run(
            &def,
            &[
                AlterAction::DropColumn {
                    name: "a".into(),
                    if_exists: false,
                },
                add("a", ChType::String, None),
            ],
        )
        .expect("alter");
        assert_eq!(
            def.layout.stored_names.get("a").map(String::as_str),
            Some("a#3")
        );
    }

    #[test]
    fn refusals_name_the_reason_and_change_nothing() {
        let def = table();
        let err = |actions: &[AlterAction]| run(&def, actions).expect_err("refused").to_string();
        assert!(err(&[AlterAction::DropColumn {
            name: "k".into(),
            if_exists: false
        }])
        .contains("ORDER BY"));
        assert!(err(&[AlterAction::ModifyColumn {
            name: "a".into(),
            ty: ChType::Int8,
            if_exists: false
        }])
        .contains("Int32 cannot be read as Int8"));
        assert!(err(&[AlterAction::DropColumn {
            name: "zz".into(),
            if_exists: false
        }])
        .contains("no column zz"));
        let view = ViewDef {
            name: "mv".into(),
            source: "q".into(),
            target: "t".into(),
            original_query: String::new(),
            query: "SELECT k, a FROM q".into(),
            output_columns: vec!["k".into(), "a".into()],
        };
        let e = apply_actions(
            &def,
            &[AlterAction::RenameColumn {
                from: "a".into(),
                to: "b".into(),
                if_exists: false,
            }],
            &[&view],
        )
        .expect_err("refused")
        .to_string();
        assert!(e.contains("view mv uses column a"), "{e}");
        assert_eq!(
            apply_actions(
                &def,
                &[AlterAction::DropColumn {
                    name: "zz".into(),
                    if_exists: true
                }],
                &[]
            ),
            Ok(None)
        );
    }

    #[test]
    fn kafka_tables_change_columns_and_live_settings_only() {
        let mut def = table();
        def.engine = Engine::Kafka(Box::new(KafkaSettings::for_tests()));
        def.columns.retain(|c| c.name != "k");
        let default_block = KafkaSettings::for_tests().max_block_size;
        let set = |name: &str, value: Option<&str>| AlterAction::ModifySetting {
            name: name.into(),
            value: value.map(str::to_string),
        };
        let altered = run(
            &def,
            &[
                set("kafka_max_block_size", Some("7")),
                AlterAction::RenameColumn {
                    from: "a".into(),
                    to: "b".into(),
                    if_exists: false,
                },
                add("n", ChType::UInt8, Some("0")),
                // No stored rows: any type, since it only says how messages parse.
                AlterAction::ModifyColumn {
                    name: "b".into(),
                    ty: ChType::String,
                    if_exists: false,
                },
            ],
        )
        .expect("alter");
        assert_eq!(altered.kafka().map(|k| k.max_block_size), Some(7));
        assert!(altered.layout.is_empty(), "a Kafka table stores nothing");
        let reset = run(&altered, &[set("kafka_max_block_size", None)]).expect("reset");
        assert_eq!(reset.kafka().map(|k| k.max_block_size), Some(default_block));
        let e = run(&def, &[set("kafka_topic_list", Some("x"))])
            .expect_err("refused")
            .to_string();
        assert!(e.contains("kafka_topic_list cannot change"), "{e}");
        let e = run(&def, &[set("kafka_max_block_size", Some("lots"))])
            .expect_err("refused")
            .to_string();
        assert!(e.contains("kafka_max_block_size"), "{e}");
    }

    #[test]
    fn mentions_whole_words_only() {
        assert!(mentions("SELECT a, b FROM q", "a"));
        assert!(mentions("SELECT `a` FROM q", "a"));
        assert!(!mentions("SELECT ab FROM q", "a"));
        assert!(!mentions("SELECT x_a FROM q", "a"));
    }
}
