//! Typed admin requests into what the executor and the cluster take: statements, catalog
//! commands and time limits. A typed call yields the statement its SQL would parse to,
//! so both paths share the executor's checks and errors.

use std::time::Duration;

use tonic::Status;

use crate::catalog::rewind::ResetTo;
use crate::catalog::CatalogCommand;
use crate::proto::{
    create_table_request, reset_offsets_request, CreateMaterializedViewRequest, CreateTableRequest,
    DrainRequest, DropTableRequest, ResetOffsetsRequest,
};
use crate::sql::reset_offsets::ResetOffsets;
use crate::sql::{self, ColumnText, CreateTable, CreateView, EngineClause, SqlError};

/// A typed offset reset as the statement its SQL parses to.
pub fn reset_offsets(r: ResetOffsetsRequest) -> Result<ResetOffsets, Status> {
    use reset_offsets_request::To;
    let to = match r.to {
        Some(To::Earliest(true)) => ResetTo::Earliest,
        Some(To::Latest(true)) => ResetTo::Latest,
        Some(To::Offset(o)) if o >= 0 => ResetTo::Offset(o),
        Some(To::Offset(o)) => {
            return Err(Status::invalid_argument(format!(
                "offset {o} is negative; use shift_by to move back from the current position"
            )))
        }
        Some(To::TimestampMs(ms)) => ResetTo::Timestamp(ms),
        Some(To::ShiftBy(n)) => ResetTo::ShiftBy(n),
        Some(To::Earliest(false) | To::Latest(false)) | None => {
            return Err(Status::invalid_argument(
                "where to is required: earliest, latest, offset, timestamp_ms or shift_by",
            ))
        }
    };
    if let Some(p) = r.partitions.iter().find(|p| **p < 0) {
        return Err(Status::invalid_argument(format!(
            "partition {p} is out of range"
        )));
    }
    Ok(ResetOffsets {
        table: r.table,
        partitions: r.partitions,
        to,
    })
}

/// How long a drain waits when the caller names no limit.
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A typed CREATE TABLE as the statement its SQL parses to. The columns' types stay text:
/// the executor types them while building the `TableDef`, which needs the catalog (for
/// `AS other_table`), so a bad type is refused there with the column's name.
pub fn create_table(r: CreateTableRequest) -> Result<CreateTable, Status> {
    let (engine, order_by, settings) = match r.engine {
        Some(create_table_request::Engine::Kafka(k)) => (
            EngineClause {
                name: "Kafka".into(),
                args: vec![],
            },
            vec![],
            k.settings.into_iter().collect::<Vec<_>>(),
        ),
        Some(create_table_request::Engine::MergeTree(m)) => (
            EngineClause {
                name: if m.engine_name.is_empty() {
                    "MergeTree".into()
                } else {
                    m.engine_name
                },
                args: vec![],
            },
            m.order_by,
            m.settings.into_iter().collect::<Vec<_>>(),
        ),
        None => return Err(Status::invalid_argument("engine is required")),
    };
    Ok(CreateTable {
        name: r.name,
        if_not_exists: r.if_not_exists,
        columns: r
            .columns
            .into_iter()
            .map(|c| ColumnText {
                name: c.name,
                type_text: c.r#type,
            })
            .collect(),
        as_table: (!r.as_table.is_empty()).then_some(r.as_table),
        engine,
        order_by,
        settings,
    })
}

/// A typed CREATE MATERIALIZED VIEW as the statement its SQL parses to. Only the SELECT
/// is SQL text, parsed as the words after `AS` are; the names are fields, never SQL.
/// Backticks are dropped from the names: this call has always named tables that way
/// (it once quoted the names into SQL text), and a name must keep meaning the same table.
/// A SELECT that does not parse is refused with the parser's error, as the SQL call
/// refuses it; a missing view, source or target is refused when the view is planned.
pub fn create_view(r: CreateMaterializedViewRequest) -> Result<CreateView, SqlError> {
    Ok(CreateView {
        name: r.name.replace('`', ""),
        if_not_exists: r.if_not_exists,
        target: r.to_table.replace('`', ""),
        query: sql::parse_select(&r.select)?,
    })
}

pub fn drop_command(r: DropTableRequest) -> CatalogCommand {
    if r.is_view {
        CatalogCommand::DropView {
            name: r.name,
            if_exists: r.if_exists,
        }
    } else {
        CatalogCommand::DropTable {
            name: r.name,
            if_exists: r.if_exists,
        }
    }
}

/// A drain's time limit: 0 means the caller named none.
pub fn drain_timeout(r: &DrainRequest) -> Duration {
    match r.timeout_ms {
        0 => DEFAULT_DRAIN_TIMEOUT,
        ms => Duration::from_millis(ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Column, KafkaEngine, MergeTreeEngine};
    use crate::sql::Statement;

    #[test]
    fn a_typed_create_table_is_the_statement_its_sql_would_be() {
        let request = CreateTableRequest {
            name: "events".into(),
            if_not_exists: true,
            columns: vec![Column {
                name: "a".into(),
                r#type: "Nullable(UInt32)".into(),
            }],
            engine: Some(create_table_request::Engine::MergeTree(MergeTreeEngine {
                order_by: vec!["a".into()],
                settings: [("replicas".to_string(), "2".to_string())].into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let typed = create_table(request).expect("converts");
        let Statement::CreateTable(parsed) = sql::parse(
            "CREATE TABLE IF NOT EXISTS events (a Nullable(UInt32)) ENGINE = MergeTree \
             ORDER BY a SETTINGS replicas = 2",
        )
        .expect("parses") else {
            panic!("not a create table");
        };
        assert_eq!(typed, parsed);
        assert_eq!(typed.engine.name, "MergeTree");
        assert_eq!(typed.settings, [("replicas".to_string(), "2".to_string())]);

        let kafka = CreateTableRequest {
            name: "queue".into(),
            as_table: "other".into(),
            engine: Some(create_table_request::Engine::Kafka(KafkaEngine {
                settings: [("kafka_topic_list".to_string(), "t".to_string())].into(),
            })),
            ..Default::default()
        };
        let typed = create_table(kafka).expect("converts");
        assert_eq!(
            typed,
            CreateTable {
                name: "queue".into(),
                if_not_exists: false,
                columns: vec![],
                as_table: Some("other".into()),
                engine: EngineClause {
                    name: "Kafka".into(),
                    args: vec![],
                },
                order_by: vec![],
                settings: vec![("kafka_topic_list".into(), "t".into())],
            }
        );

        let replicated = CreateTableRequest {
            name: "r".into(),
            engine: Some(create_table_request::Engine::MergeTree(MergeTreeEngine {
                engine_name: "ReplicatedMergeTree".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(
            create_table(replicated).expect("converts").engine.name,
            "ReplicatedMergeTree"
        );

        let none = create_table(CreateTableRequest::default()).expect_err("no engine");
        assert_eq!(none.code(), tonic::Code::InvalidArgument);
        assert_eq!(none.message(), "engine is required");
    }

    fn view_request(name: &str, to_table: &str, select: &str) -> CreateMaterializedViewRequest {
        CreateMaterializedViewRequest {
            name: name.into(),
            to_table: to_table.into(),
            select: select.into(),
            if_not_exists: true,
        }
    }

    #[test]
    fn a_typed_view_is_the_statement_its_sql_would_be() {
        let select = "SELECT a, count() AS n FROM queue WHERE a > 1 GROUP BY a;";
        let typed = create_view(view_request("v", "t", select)).expect("converts");
        let Statement::CreateView(parsed) = sql::parse(&format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS v TO t AS {select}"
        ))
        .expect("parses") else {
            panic!("not a view");
        };
        assert_eq!(typed, parsed);
        assert_eq!(
            typed.query.to_string(),
            "SELECT a, count() AS n FROM queue WHERE a > 1 GROUP BY a"
        );
        // Names are fields, not SQL: a space or a dot is part of the name, and
        // backticks are dropped as they always were.
        let odd = create_view(view_request("my `view`", "default.t", "SELECT 1")).expect("odd");
        assert_eq!(
            (odd.name.as_str(), odd.target.as_str()),
            ("my view", "default.t")
        );
    }

    #[test]
    fn a_typed_view_with_a_bad_select_gets_the_parsers_error() {
        let refused = |select: &str| match create_view(view_request("v", "t", select)) {
            Err(SqlError::Syntax(text)) => text,
            other => panic!("{select:?}: not a syntax error: {other:?}"),
        };
        assert!(refused("").contains("found: EOF"));
        // A second statement cannot ride along with the query.
        let smuggled = refused("SELECT 1; DROP TABLE t");
        assert!(
            smuggled.starts_with("expected the end of the statement, found 'DROP'"),
            "{smuggled}"
        );
        assert!(refused("SELEC 1").contains("SELEC"));
    }

    #[test]
    fn drops_and_drain_limits() {
        let drop = |is_view| {
            drop_command(DropTableRequest {
                name: "x".into(),
                if_exists: true,
                is_view,
            })
        };
        assert_eq!(
            drop(true),
            CatalogCommand::DropView {
                name: "x".into(),
                if_exists: true
            }
        );
        assert_eq!(
            drop(false),
            CatalogCommand::DropTable {
                name: "x".into(),
                if_exists: true
            }
        );
        assert_eq!(
            drain_timeout(&DrainRequest::default()),
            DEFAULT_DRAIN_TIMEOUT
        );
        assert_eq!(
            drain_timeout(&DrainRequest { timeout_ms: 1500 }),
            Duration::from_millis(1500)
        );
    }
}
