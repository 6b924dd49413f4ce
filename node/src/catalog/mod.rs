//! The catalog: tables, materialized views, and the rules that keep them consistent.
//!
//! `Catalog::apply` is the only way to change it and is deterministic (no clocks, no
//! hash-map order), so every replica of the catalog that applies the same commands in the
//! same order holds the same catalog. A command that fails changes nothing.
//! Must not import `rdkafka`, `actix`, `sled` or the query engine.

pub mod alter;
pub mod kafka_compression;
pub mod kafka_groups;
pub mod kafka_settings;
pub mod named_collections;
pub mod rewind;
pub mod types;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

pub use kafka_settings::{HandleErrorMode, KafkaSettings, SettingsError};
pub use types::{ChType, TypeError};

/// ClickHouse's `replicated_deduplication_window` default (number of recent block hashes).
pub const DEFAULT_DEDUP_WINDOW: u64 = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ChType,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeTreeSettings {
    pub dedup_window: u64,
    /// How many nodes hold the table (Sluice's `replicas` setting); 0: min(3, nodes).
    #[serde(default)]
    pub replicas: u64,
}

impl Default for MergeTreeSettings {
    fn default() -> Self {
        MergeTreeSettings {
            dedup_window: DEFAULT_DEDUP_WINDOW,
            replicas: 0,
        }
    }
}

impl MergeTreeSettings {
    /// Settings accepted on a storage table. ClickHouse's MergeTree tuning settings that do
    /// not change results are accepted and ignored, so the guide's DDL and common variants
    /// work; anything else is an error naming the setting.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<MergeTreeSettings, SettingsError> {
        const IGNORED: &[&str] = &[
            "index_granularity",
            "index_granularity_bytes",
            "min_bytes_for_wide_part",
            "storage_policy",
        ];
        let mut out = MergeTreeSettings::default();
        for (name, value) in pairs {
            match name.as_str() {
                "replicated_deduplication_window" => {
                    out.dedup_window =
                        value
                            .trim()
                            .parse::<u64>()
                            .map_err(|_| SettingsError::Invalid {
                                name: name.clone(),
                                value: value.clone(),
                                reason: "expected a non-negative integer".into(),
                            })?;
                }
                "replicas" => {
                    out.replicas = value
                        .trim()
                        .parse::<u64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| SettingsError::Invalid {
                            name: name.clone(),
                            value: value.clone(),
                            reason: "expected the number of nodes that hold the table, 1 or more"
                                .into(),
                        })?;
                }
                n if IGNORED.contains(&n) => {}
                _ => {
                    return Err(SettingsError::Invalid {
                        name: name.clone(),
                        value: value.clone(),
                        reason: "unknown setting for engine MergeTree".into(),
                    })
                }
            }
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Engine {
    /// Boxed: the settings are several times the size of the other variants.
    Kafka(Box<KafkaSettings>),
    /// `MergeTree` and `ReplicatedMergeTree`: every Sluice table is replicated.
    MergeTree {
        engine_name: String,
        order_by: Vec<String>,
        settings: MergeTreeSettings,
    },
}

impl Engine {
    pub fn name(&self) -> &str {
        match self {
            Engine::Kafka(_) => "Kafka",
            Engine::MergeTree { engine_name, .. } => engine_name,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    pub name: String,
    pub columns: Vec<Column>,
    pub engine: Engine,
    /// `DETACH TABLE` stops a Kafka table's consumers without forgetting it.
    #[serde(default)]
    pub detached: bool,
    /// Stored names, fills and comments left by ALTERs (empty for a table never altered).
    #[serde(default, skip_serializing_if = "alter::StoredLayout::is_empty")]
    pub layout: alter::StoredLayout,
}

/// The `Array(String)` type of the `_headers.name` and `_headers.value` columns.
pub fn header_list_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, false)))
}

/// Names of the virtual columns that hold a message's headers (ClickHouse's Nested
/// `_headers`): written dotted, like `system.kafka_consumers`' `assignments.*`.
pub const HEADER_NAMES: &str = "_headers.name";
pub const HEADER_VALUES: &str = "_headers.value";

/// Columns a Kafka table exposes to views besides its declared ones, in ClickHouse's
/// order after Sluice's first five. `_raw_message` and `_error` exist only with
/// `kafka_handle_error_mode = 'stream'`, as in ClickHouse. `_timestamp_ms` is
/// ClickHouse's `Nullable(DateTime64(3))`: Sluice has no DateTime64 column type, so it is
/// an Arrow millisecond timestamp, stored as epoch milliseconds by an Int64/UInt64 target
/// column (or as seconds by a DateTime one).
pub fn kafka_virtual_columns(mode: HandleErrorMode) -> Vec<Field> {
    let mut fields = vec![
        Field::new("_topic", DataType::Utf8, false),
        Field::new("_partition", DataType::UInt64, false),
        Field::new("_offset", DataType::UInt64, false),
        Field::new("_key", DataType::Utf8, false),
        Field::new(
            "_timestamp",
            DataType::Timestamp(TimeUnit::Second, None),
            true,
        ),
        Field::new(
            "_timestamp_ms",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
        Field::new(HEADER_NAMES, header_list_type(), false),
        Field::new(HEADER_VALUES, header_list_type(), false),
    ];
    if mode == HandleErrorMode::Stream {
        fields.push(Field::new("_raw_message", DataType::Utf8, false));
        fields.push(Field::new("_error", DataType::Utf8, false));
    }
    fields
}

/// Virtual columns that rows written to a Kafka table may carry (an INSERT's column
/// list, or a view's output into a Kafka table): they make each message's key, timestamp
/// and headers instead of its payload. ClickHouse writes `_key` and `_timestamp` the same
/// way; it writes no headers, which Sluice does from `_headers.name`/`_headers.value`.
pub fn kafka_envelope_columns() -> [Field; 4] {
    [
        Field::new("_key", DataType::Utf8, true),
        Field::new(
            "_timestamp",
            DataType::Timestamp(TimeUnit::Second, None),
            true,
        ),
        Field::new(HEADER_NAMES, header_list_type(), true),
        Field::new(HEADER_VALUES, header_list_type(), true),
    ]
}

pub fn is_kafka_envelope_column(name: &str) -> bool {
    kafka_envelope_columns().iter().any(|f| f.name() == name)
}

/// The dotted virtual column names, which queries may write unquoted.
pub fn dotted_virtual_columns() -> [&'static str; 2] {
    [HEADER_NAMES, HEADER_VALUES]
}

impl TableDef {
    pub fn kafka(&self) -> Option<&KafkaSettings> {
        match &self.engine {
            Engine::Kafka(s) => Some(s),
            Engine::MergeTree { .. } => None,
        }
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The Arrow schema of the stored (or decoded) rows.
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| c.ty.arrow_field(&c.name))
                .collect::<Vec<_>>(),
        ))
    }

    /// The name a column's values carry in the table's parts (see `alter`).
    pub fn stored_name<'a>(&'a self, column: &'a str) -> &'a str {
        self.layout
            .stored_names
            .get(column)
            .map_or(column, String::as_str)
    }

    /// The schema parts are written with: stored names, current types, and on columns
    /// added by ALTER the value older parts' rows read as (`alter::FILL_KEY`), so a merge
    /// fills them in.
    pub fn stored_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| {
                    let stored = self.stored_name(&c.name);
                    let field = c.ty.arrow_field(stored);
                    match self.layout.fills.get(stored) {
                        Some(fill) => field
                            .with_metadata([(alter::FILL_KEY.to_string(), fill.clone())].into()),
                        None => field,
                    }
                })
                .collect::<Vec<_>>(),
        ))
    }

    /// The schema a scan of the parts reads: current names and types, with the stored
    /// name (`alter::STORED_NAME_KEY`) and fill (`alter::FILL_KEY`) of altered columns
    /// as field metadata; plain `arrow_schema` for a table never altered.
    pub fn read_schema(&self) -> SchemaRef {
        if self.layout.is_empty() {
            return self.arrow_schema();
        }
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| {
                    let stored = self.stored_name(&c.name);
                    let mut metadata = std::collections::HashMap::new();
                    if stored != c.name {
                        metadata.insert(alter::STORED_NAME_KEY.to_string(), stored.to_string());
                    }
                    if let Some(fill) = self.layout.fills.get(stored) {
                        metadata.insert(alter::FILL_KEY.to_string(), fill.clone());
                    }
                    c.ty.arrow_field(&c.name).with_metadata(metadata)
                })
                .collect::<Vec<_>>(),
        ))
    }

    /// A column's comment (`ALTER TABLE … COMMENT COLUMN`), or empty.
    pub fn comment(&self, column: &str) -> &str {
        self.layout
            .comments
            .get(self.stored_name(column))
            .map_or("", String::as_str)
    }

    /// What a view reading this table sees: for a Kafka table the declared columns
    /// followed by the virtual ones, for a storage table its columns.
    pub fn source_schema(&self) -> SchemaRef {
        let Some(settings) = self.kafka() else {
            return self.arrow_schema();
        };
        let mut fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| c.ty.arrow_field(&c.name))
            .collect();
        fields.extend(kafka_virtual_columns(settings.handle_error_mode));
        Arc::new(Schema::new(fields))
    }

    /// The columns a stored table's parts are sorted by (its ORDER BY, unquoted); none for
    /// a Kafka table.
    pub fn order_by(&self) -> Vec<String> {
        match &self.engine {
            Engine::MergeTree { order_by, .. } => order_by
                .iter()
                .map(|k| k.trim_matches('`').trim_matches('"').to_string())
                .collect(),
            Engine::Kafka(_) => Vec::new(),
        }
    }

    pub fn dedup_window(&self) -> u64 {
        match &self.engine {
            Engine::MergeTree { settings, .. } => settings.dedup_window,
            Engine::Kafka(_) => 0,
        }
    }

    /// The `replicas` setting of a stored table (0: the default); none for a Kafka table,
    /// which stores nothing.
    pub fn replicas(&self) -> Option<u64> {
        match &self.engine {
            Engine::MergeTree { settings, .. } => Some(settings.replicas),
            Engine::Kafka(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDef {
    pub name: String,
    /// The Kafka table the view reads.
    pub source: String,
    /// The table its rows go to.
    pub target: String,
    /// The SELECT as the user wrote it.
    pub original_query: String,
    /// The SELECT run over each block: `*` expanded to the declared columns, since virtual
    /// columns are not part of `*` in ClickHouse.
    pub query: String,
    /// Names of the columns the query produces; each one is a column of the target.
    pub output_columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatalogCommand {
    CreateTable {
        def: TableDef,
        if_not_exists: bool,
    },
    CreateView {
        def: ViewDef,
        if_not_exists: bool,
    },
    DropTable {
        name: String,
        if_exists: bool,
    },
    DropView {
        name: String,
        if_exists: bool,
    },
    SetDetached {
        name: String,
        detached: bool,
    },
    /// `ALTER TABLE` changing a stored table's columns (see `alter`), all or nothing.
    AlterTable {
        table: String,
        actions: Vec<alter::AlterAction>,
    },
    /// `ALTER TABLE view MODIFY QUERY …`: the view's new query, checked as CREATE checks
    /// it; the source and target stay.
    ModifyViewQuery {
        def: ViewDef,
    },
    /// Records the moves of a reset of a Kafka table's positions (already made in its
    /// views' tables); refused unless the table is detached.
    RecordOffsetResets {
        resets: Vec<rewind::OffsetReset>,
    },
    CreateNamedCollection {
        collection: named_collections::NamedCollection,
        if_not_exists: bool,
    },
    /// The collection as the statement saw it (`before`), as it becomes, and every table
    /// using it with its settings resolved again by the node that ran the statement
    /// (resolving compiles schemas from files, which apply must not read).
    AlterNamedCollection {
        before: named_collections::NamedCollection,
        after: named_collections::NamedCollection,
        tables: Vec<TableDef>,
    },
    DropNamedCollection {
        name: String,
        if_exists: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CatalogError {
    #[error("table {0} already exists")]
    TableExists(String),
    #[error("view {0} already exists")]
    ViewExists(String),
    #[error("table {0} does not exist")]
    NoTable(String),
    #[error("view {0} does not exist")]
    NoView(String),
    #[error("table {table} has no columns")]
    NoColumns { table: String },
    #[error("table {table}: column {column} is declared twice")]
    DuplicateColumn { table: String, column: String },
    #[error("table {table}: column {column}: virtual column names (starting with '_') are reserved for Kafka tables")]
    ReservedColumn { table: String, column: String },
    #[error("table {table} is used by view {view}; drop the view first")]
    InUse { table: String, view: String },
    #[error("view {view}: neither source {source_table} nor target {target} is a Kafka table (a view reads a Kafka table, or pushes a table's new rows to one)")]
    NoKafkaSide {
        view: String,
        source_table: String,
        target: String,
    },
    #[error("view {view}: source {source_table} and target {target} are both Kafka tables (Kafka to Kafka is not supported)")]
    KafkaToKafka {
        view: String,
        source_table: String,
        target: String,
    },
    #[error("view {view}: column {column} is not in target table {target}")]
    ColumnNotInTarget {
        view: String,
        column: String,
        target: String,
    },
    #[error(
        "table {table}: format {format} fills exactly one String column; the table has {columns}"
    )]
    FormatNeedsOneString {
        table: String,
        format: kafka_settings::Format,
        columns: String,
    },
    #[error("{0} is not a Kafka table; only Kafka tables can be detached or have offsets")]
    NotKafka(String),
    #[error("{0} names a view; use DROP VIEW")]
    IsView(String),
    #[error("ALTER TABLE {table} {action} refused: {reason}")]
    AlterRefused {
        table: String,
        action: String,
        reason: String,
    },
    #[error("{0} is attached: its consumers may be reading; DETACH TABLE {0} first, then reset its offsets, then ATTACH TABLE {0}")]
    ResetWhileAttached(String),
    #[error(transparent)]
    Collection(#[from] named_collections::CollectionError),
}

/// What a command did, for the reply to the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatalogOutcome {
    Changed,
    Unchanged,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub tables: BTreeMap<String, TableDef>,
    pub views: BTreeMap<String, ViewDef>,
    /// The latest moves of Kafka tables' positions, oldest first.
    #[serde(default)]
    pub offset_resets: std::collections::VecDeque<rewind::OffsetReset>,
    /// Named collections made by SQL (the config file's are the node's own, not here).
    #[serde(default)]
    pub named_collections: BTreeMap<String, named_collections::NamedCollection>,
}

impl Catalog {
    pub fn table(&self, name: &str) -> Option<&TableDef> {
        self.tables.get(name)
    }

    /// The Kafka tables that consume: attached, with at least one view reading them.
    pub fn consuming_kafka_tables(&self) -> impl Iterator<Item = (&TableDef, &KafkaSettings)> {
        self.tables.values().filter_map(|t| match t.kafka() {
            Some(settings) if !t.detached && self.views.values().any(|v| v.source == t.name) => {
                Some((t, settings))
            }
            _ => None,
        })
    }

    /// How the consuming Kafka tables that share a group split its topics' partitions.
    pub fn group_shares(&self) -> kafka_groups::GroupShares {
        kafka_groups::GroupShares::new(self.consuming_kafka_tables())
    }

    /// Views reading the given Kafka table, in name order.
    pub fn views_of(&self, source: &str) -> Vec<&ViewDef> {
        self.views.values().filter(|v| v.source == source).collect()
    }

    pub fn apply(&mut self, cmd: &CatalogCommand) -> Result<CatalogOutcome, CatalogError> {
        match cmd {
            CatalogCommand::CreateTable { def, if_not_exists } => {
                if self.tables.contains_key(&def.name) || self.views.contains_key(&def.name) {
                    if *if_not_exists {
                        return Ok(CatalogOutcome::Unchanged);
                    }
                    return Err(if self.views.contains_key(&def.name) {
                        CatalogError::ViewExists(def.name.clone())
                    } else {
                        CatalogError::TableExists(def.name.clone())
                    });
                }
                check_columns(def)?;
                self.check_collection_exists(def)?;
                self.tables.insert(def.name.clone(), def.clone());
            }
            CatalogCommand::CreateView { def, if_not_exists } => {
                if self.views.contains_key(&def.name) || self.tables.contains_key(&def.name) {
                    if *if_not_exists {
                        return Ok(CatalogOutcome::Unchanged);
                    }
                    return Err(if self.tables.contains_key(&def.name) {
                        CatalogError::TableExists(def.name.clone())
                    } else {
                        CatalogError::ViewExists(def.name.clone())
                    });
                }
                let source = self
                    .tables
                    .get(&def.source)
                    .ok_or_else(|| CatalogError::NoTable(def.source.clone()))?;
                let target = self
                    .tables
                    .get(&def.target)
                    .ok_or_else(|| CatalogError::NoTable(def.target.clone()))?;
                // A view reads a Kafka table into a table, or pushes what is stored in a
                // table to a Kafka table (its topic).
                match (source.kafka().is_some(), target.kafka().is_some()) {
                    (true, false) | (false, true) => {}
                    (false, false) => {
                        return Err(CatalogError::NoKafkaSide {
                            view: def.name.clone(),
                            source_table: def.source.clone(),
                            target: def.target.clone(),
                        })
                    }
                    (true, true) => {
                        return Err(CatalogError::KafkaToKafka {
                            view: def.name.clone(),
                            source_table: def.source.clone(),
                            target: def.target.clone(),
                        })
                    }
                }
                for column in &def.output_columns {
                    let envelope = target.kafka().is_some() && is_kafka_envelope_column(column);
                    if target.column(column).is_none() && !envelope {
                        return Err(CatalogError::ColumnNotInTarget {
                            view: def.name.clone(),
                            column: column.clone(),
                            target: def.target.clone(),
                        });
                    }
                }
                self.views.insert(def.name.clone(), def.clone());
            }
            CatalogCommand::DropTable { name, if_exists } => {
                if self.views.contains_key(name) {
                    return Err(CatalogError::IsView(name.clone()));
                }
                if !self.tables.contains_key(name) {
                    if *if_exists {
                        return Ok(CatalogOutcome::Unchanged);
                    }
                    return Err(CatalogError::NoTable(name.clone()));
                }
                if let Some(view) = self
                    .views
                    .values()
                    .find(|v| v.source == *name || v.target == *name)
                {
                    return Err(CatalogError::InUse {
                        table: name.clone(),
                        view: view.name.clone(),
                    });
                }
                self.tables.remove(name);
            }
            CatalogCommand::DropView { name, if_exists } => {
                if self.views.remove(name).is_none() {
                    if *if_exists {
                        return Ok(CatalogOutcome::Unchanged);
                    }
                    return Err(CatalogError::NoView(name.clone()));
                }
            }
            CatalogCommand::SetDetached { name, detached } => {
                let table = self
                    .tables
                    .get_mut(name)
                    .ok_or_else(|| CatalogError::NoTable(name.clone()))?;
                if table.kafka().is_none() {
                    return Err(CatalogError::NotKafka(name.clone()));
                }
                if table.detached == *detached {
                    return Ok(CatalogOutcome::Unchanged);
                }
                table.detached = *detached;
            }
            CatalogCommand::AlterTable { table, actions } => {
                if self.views.contains_key(table) {
                    return Err(CatalogError::AlterRefused {
                        table: table.clone(),
                        action: actions
                            .first()
                            .map(alter::AlterAction::describe)
                            .unwrap_or_default(),
                        reason: "it is a materialized view, not a table".into(),
                    });
                }
                let def = self
                    .tables
                    .get(table)
                    .ok_or_else(|| CatalogError::NoTable(table.clone()))?;
                let views: Vec<&ViewDef> = self.views.values().collect();
                let Some(altered) = alter::apply_actions(def, actions, &views)? else {
                    return Ok(CatalogOutcome::Unchanged);
                };
                check_columns(&altered)?;
                self.tables.insert(table.clone(), altered);
            }
            CatalogCommand::ModifyViewQuery { def } => {
                let old = self
                    .views
                    .get(&def.name)
                    .ok_or_else(|| CatalogError::NoView(def.name.clone()))?;
                // Its positions are kept by (view, topic, partition) in the target: a new
                // source would start from the old one's positions.
                if old.source != def.source || old.target != def.target {
                    return Err(CatalogError::AlterRefused {
                        table: def.name.clone(),
                        action: "MODIFY QUERY".into(),
                        reason: format!(
                            "the view reads {} into {}; the new query must too (it reads {} into {}); create another view instead",
                            old.source, old.target, def.source, def.target
                        ),
                    });
                }
                let mut trial = self.clone();
                trial.views.remove(&def.name);
                trial.apply(&CatalogCommand::CreateView {
                    def: def.clone(),
                    if_not_exists: false,
                })?;
                *self = trial;
            }
            CatalogCommand::RecordOffsetResets { resets } => {
                for name in resets
                    .iter()
                    .map(|r| &r.table)
                    .collect::<std::collections::BTreeSet<_>>()
                {
                    let table = self
                        .tables
                        .get(name)
                        .ok_or_else(|| CatalogError::NoTable(name.clone()))?;
                    if table.kafka().is_none() {
                        return Err(CatalogError::NotKafka(name.clone()));
                    }
                    if !table.detached {
                        return Err(CatalogError::ResetWhileAttached(name.clone()));
                    }
                }
                self.offset_resets.extend(resets.iter().cloned());
                let excess = self.offset_resets.len().saturating_sub(rewind::RESETS_KEPT);
                self.offset_resets.drain(..excess);
            }
            CatalogCommand::CreateNamedCollection { .. }
            | CatalogCommand::AlterNamedCollection { .. }
            | CatalogCommand::DropNamedCollection { .. } => return self.apply_collection(cmd),
        }
        Ok(CatalogOutcome::Changed)
    }
}

fn check_columns(def: &TableDef) -> Result<(), CatalogError> {
    if def.columns.is_empty() {
        return Err(CatalogError::NoColumns {
            table: def.name.clone(),
        });
    }
    if let Some(settings) = def.kafka() {
        let one_string = matches!(def.columns.as_slice(), [c] if c.ty.base() == &ChType::String);
        if settings.format.needs_one_string_column() && !one_string {
            return Err(CatalogError::FormatNeedsOneString {
                table: def.name.clone(),
                format: settings.format,
                columns: def
                    .columns
                    .iter()
                    .map(|c| format!("{} {}", c.name, c.ty))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    for (i, c) in def.columns.iter().enumerate() {
        if def.columns[..i].iter().any(|o| o.name == c.name) {
            return Err(CatalogError::DuplicateColumn {
                table: def.name.clone(),
                column: c.name.clone(),
            });
        }
        if def.kafka().is_some() && c.name.starts_with('_') {
            return Err(CatalogError::ReservedColumn {
                table: def.name.clone(),
                column: c.name.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka_table(name: &str) -> TableDef {
        let settings = KafkaSettings::for_tests();
        TableDef {
            name: name.into(),
            columns: vec![Column {
                name: "a".into(),
                ty: ChType::UInt32,
            }],
            engine: Engine::Kafka(Box::new(settings)),
            detached: false,
            layout: Default::default(),
        }
    }

    fn merge_tree(name: &str) -> TableDef {
        TableDef {
            name: name.into(),
            columns: vec![Column {
                name: "a".into(),
                ty: ChType::UInt32,
            }],
            engine: Engine::MergeTree {
                engine_name: "MergeTree".into(),
                order_by: vec!["a".into()],
                settings: MergeTreeSettings::default(),
            },
            detached: false,
            layout: Default::default(),
        }
    }

    fn view(cols: &[&str]) -> ViewDef {
        ViewDef {
            name: "mv".into(),
            source: "q".into(),
            target: "t".into(),
            original_query: "SELECT * FROM q".into(),
            query: "SELECT a FROM q".into(),
            output_columns: cols.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn failed_commands_change_nothing() {
        let mut c = Catalog::default();
        c.apply(&CatalogCommand::CreateTable {
            def: kafka_table("q"),
            if_not_exists: false,
        })
        .expect("create");
        c.apply(&CatalogCommand::CreateTable {
            def: merge_tree("t"),
            if_not_exists: false,
        })
        .expect("create");
        let before = c.clone();
        assert_eq!(
            c.apply(&CatalogCommand::CreateTable {
                def: merge_tree("t"),
                if_not_exists: false
            }),
            Err(CatalogError::TableExists("t".into()))
        );
        assert!(matches!(
            c.apply(&CatalogCommand::CreateView {
                def: view(&["a", "b"]),
                if_not_exists: false
            }),
            Err(CatalogError::ColumnNotInTarget { ref column, .. }) if column == "b"
        ));
        assert_eq!(c, before);
        c.apply(&CatalogCommand::CreateView {
            def: view(&["a"]),
            if_not_exists: false,
        })
        .expect("view");
        assert!(matches!(
            c.apply(&CatalogCommand::DropTable {
                name: "t".into(),
                if_exists: false
            }),
            Err(CatalogError::InUse { .. })
        ));
        assert_eq!(c.views_of("q").len(), 1);
    }

    #[test]
    fn kafka_tables_reserve_underscore_columns() {
        let mut def = kafka_table("q");
        def.columns.push(Column {
            name: "_offset".into(),
            ty: ChType::UInt64,
        });
        let mut c = Catalog::default();
        assert!(matches!(
            c.apply(&CatalogCommand::CreateTable {
                def,
                if_not_exists: false
            }),
            Err(CatalogError::ReservedColumn { .. })
        ));
    }
}
