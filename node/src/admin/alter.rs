//! `ALTER TABLE t ADD | DROP | RENAME | MODIFY | COMMENT COLUMN …`: types the statement
//! into a catalog command. The one thing done here rather than in the catalog is the
//! value an added column reads as in older rows: its DEFAULT is evaluated once, on this
//! node, so every replica applies the same literal (apply must not evaluate `now()`).

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::util::display::array_value_to_string;
use datafusion::prelude::SessionContext;

use crate::catalog::alter::{AlterAction, ColumnPosition};
use crate::catalog::{Catalog, CatalogCommand, ChType, Column};
use crate::query::views::plan_view;
use crate::sql::alter::{Alter, AlterText};
use crate::sql::CreateView;

#[derive(Debug, thiserror::Error)]
pub enum AlterError {
    #[error("ALTER TABLE {table}: column {column}: {source}")]
    Type {
        table: String,
        column: String,
        #[source]
        source: crate::catalog::TypeError,
    },
    #[error("ALTER TABLE {table} ADD COLUMN {column}: DEFAULT {default}: {reason}")]
    Default {
        table: String,
        column: String,
        default: String,
        reason: String,
    },
    #[error("ALTER TABLE {table} MODIFY QUERY: the query must be the ALTER's only change")]
    QueryNotAlone { table: String },
    #[error("ALTER TABLE {name} MODIFY QUERY: {name} is not a materialized view")]
    NotAView { name: String },
    #[error("ALTER TABLE {view} MODIFY QUERY: {source}")]
    Query {
        view: String,
        #[source]
        source: crate::query::QueryError,
    },
    #[error("ALTER TABLE {table} ADD COLUMN {column} {ty}: {reason}")]
    Refused {
        table: String,
        column: String,
        ty: ChType,
        reason: String,
    },
}

/// The catalog command for `alter`, typed against `catalog`.
pub async fn command(alter: Alter, catalog: &Catalog) -> Result<CatalogCommand, AlterError> {
    let table = alter.table;
    if let [AlterText::ModifyQuery(query)] = alter.actions.as_slice() {
        return modify_query(&table, query.clone(), catalog).await;
    }
    let kafka = catalog.table(&table).is_some_and(|t| t.kafka().is_some());
    let parse_type = |column: &str, text: &str| {
        ChType::parse(text).map_err(|source| AlterError::Type {
            table: table.clone(),
            column: column.to_string(),
            source,
        })
    };
    let mut actions = Vec::with_capacity(alter.actions.len());
    for action in alter.actions {
        actions.push(match action {
            AlterText::AddColumn {
                name,
                type_text,
                if_not_exists,
                default,
                position,
            } => {
                let ty = parse_type(&name, &type_text)?;
                if kafka && default.is_some() {
                    return Err(AlterError::Refused {
                        table: table.clone(),
                        column: name,
                        ty,
                        reason: "a Kafka table's columns take no DEFAULT: a field a message lacks reads as the type's default, as for the columns given at CREATE".into(),
                    });
                }
                let fill = if kafka {
                    None
                } else {
                    fill(&table, &name, &ty, default.as_deref()).await?
                };
                AlterAction::AddColumn {
                    column: Column { name, ty },
                    if_not_exists,
                    fill,
                    position: match position {
                        None => ColumnPosition::Last,
                        Some(None) => ColumnPosition::First,
                        Some(Some(after)) => ColumnPosition::After(after),
                    },
                }
            }
            AlterText::DropColumn { name, if_exists } => {
                AlterAction::DropColumn { name, if_exists }
            }
            AlterText::RenameColumn {
                from,
                to,
                if_exists,
            } => AlterAction::RenameColumn {
                from,
                to,
                if_exists,
            },
            AlterText::ModifyColumn {
                name,
                type_text,
                if_exists,
            } => AlterAction::ModifyColumn {
                ty: parse_type(&name, &type_text)?,
                name,
                if_exists,
            },
            AlterText::CommentColumn {
                name,
                comment,
                if_exists,
            } => AlterAction::CommentColumn {
                name,
                comment,
                if_exists,
            },
            AlterText::ModifySetting { name, value } => AlterAction::ModifySetting { name, value },
            AlterText::ModifyQuery(_) => {
                return Err(AlterError::QueryNotAlone { table: table.clone() })
            }
        });
    }
    Ok(CatalogCommand::AlterTable { table, actions })
}

/// `ALTER TABLE view MODIFY QUERY …`: planned as CREATE MATERIALIZED VIEW plans it (`*`
/// expanded, output columns checked against the target).
async fn modify_query(
    name: &str,
    query: Box<sqlparser::ast::Query>,
    catalog: &Catalog,
) -> Result<CatalogCommand, AlterError> {
    let Some(view) = catalog.views.get(name) else {
        return Err(AlterError::NotAView {
            name: name.to_string(),
        });
    };
    let create = CreateView {
        name: name.to_string(),
        if_not_exists: false,
        target: view.target.clone(),
        query,
    };
    let def = plan_view(&create, catalog)
        .await
        .map_err(|source| AlterError::Query {
            view: name.to_string(),
            source,
        })?;
    Ok(CatalogCommand::ModifyViewQuery { def })
}

/// What rows stored before the column existed read as, as text that casts back to the
/// column's type: the DEFAULT's value, else the type's default; none (NULL) for a
/// Nullable column without DEFAULT.
async fn fill(
    table: &str,
    column: &str,
    ty: &ChType,
    default: Option<&str>,
) -> Result<Option<String>, AlterError> {
    let refused = |reason: String| AlterError::Refused {
        table: table.to_string(),
        column: column.to_string(),
        ty: ty.clone(),
        reason,
    };
    let to = ty.arrow_type();
    let value: ArrayRef = match default {
        // Older rows read the fill by coalescing, which would also turn this column's
        // own NULLs into it.
        Some(_) if ty.is_nullable() => {
            return Err(refused(
                "a Nullable column cannot take a DEFAULT for older rows: add it as Nullable without DEFAULT (older rows read NULL) or as a non-Nullable type with DEFAULT".into(),
            ))
        }
        None if ty.is_nullable() => return Ok(None),
        None => crate::format::json_each_row::default_scalar(ty)
            .map_err(|e| refused(format!("no default value for the type: {e}")))?
            .into_inner(),
        Some(expr) => {
            let bad = |reason: String| AlterError::Default {
                table: table.to_string(),
                column: column.to_string(),
                default: expr.to_string(),
                reason,
            };
            let ctx = SessionContext::new();
            let batches = ctx
                .sql(&format!("SELECT {expr}"))
                .await
                .map_err(|e| bad(format!("not a constant expression: {e}")))?
                .collect()
                .await
                .map_err(|e| bad(e.to_string()))?;
            let value = batches
                .iter()
                .find(|b| b.num_rows() > 0)
                .map(|b| b.column(0).slice(0, 1))
                .ok_or_else(|| bad("it has no value".into()))?;
            cast(&value, &to).map_err(|e| bad(format!("not a value of the column's type: {e}")))?
        }
    };
    if value.is_null(0) {
        return Err(refused("its DEFAULT is NULL".into()));
    }
    let text = array_value_to_string(&value, 0)
        .map_err(|e| refused(format!("the default cannot be kept: {e}")))?;
    check_round_trip(&text, &to).map_err(refused)?;
    Ok(Some(text))
}

/// The fill is kept as text and cast back when read: refuse one that does not cast back.
fn check_round_trip(text: &str, to: &DataType) -> Result<(), String> {
    let back = cast(&StringArray::from(vec![text]), to)
        .map_err(|e| format!("its default {text:?} does not read back as the type: {e}"))?;
    if back.is_null(0) {
        return Err(format!(
            "its default {text:?} does not read back as the type"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn fill_of(ty: &str, default: Option<&str>) -> Result<Option<String>, AlterError> {
        fill("t", "c", &ChType::parse(ty).expect("type"), default).await
    }

    #[tokio::test]
    async fn fills_are_evaluated_once_as_text() {
        assert_eq!(
            fill_of("Int64", Some("40 + 2")).await.expect("fill"),
            Some("42".into())
        );
        assert_eq!(
            fill_of("String", Some("concat('a', 'b')"))
                .await
                .expect("fill"),
            Some("ab".into())
        );
        assert_eq!(
            fill_of("UInt8", None).await.expect("fill"),
            Some("0".into())
        );
        assert_eq!(
            fill_of("String", None).await.expect("fill"),
            Some("".into())
        );
        assert_eq!(
            fill_of("Date", None).await.expect("fill"),
            Some("1970-01-01".into())
        );
        assert_eq!(fill_of("Nullable(Int32)", None).await.expect("fill"), None);
        let e = fill_of("Nullable(Int32)", Some("1"))
            .await
            .expect_err("refused");
        assert!(
            e.to_string()
                .contains("Nullable column cannot take a DEFAULT"),
            "{e}"
        );
        let e = fill_of("Int32", Some("some_column + 1"))
            .await
            .expect_err("refused");
        assert!(e.to_string().contains("not a constant expression"), "{e}");
    }
}
