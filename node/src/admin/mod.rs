//! The gRPC admin API (tonic): SQL, typed DDL, table and consumer status, and health.
//! Errors become `tonic::Status` in one place, here.

pub mod executor;
pub mod service;

use tonic::Status;

use crate::catalog::CatalogError;
use executor::ExecError;

pub fn to_status(e: &ExecError) -> Status {
    let text = e.to_string();
    match e {
        ExecError::Sql(_) | ExecError::Ddl(_) => Status::invalid_argument(text),
        ExecError::Query(crate::query::QueryError::NoTable(_)) => Status::not_found(text),
        ExecError::Query(_) | ExecError::Insert { .. } => Status::invalid_argument(text),
        ExecError::Sink(
            crate::ingest::sink::SinkError::NotAnEnumMember { .. }
            | crate::ingest::sink::SinkError::NotKafka(_),
        ) => Status::invalid_argument(text),
        // The broker did not take the rows: retry later (some may have arrived).
        ExecError::Sink(crate::ingest::sink::SinkError::Delivery { .. }) => {
            Status::unavailable(text)
        }
        ExecError::Sink(_) => Status::failed_precondition(text),
        ExecError::Cluster(crate::cluster::ClusterError::NoLeader(_))
        | ExecError::Cluster(crate::cluster::ClusterError::NotInitialized) => {
            Status::unavailable(text)
        }
        ExecError::State(_) | ExecError::Cluster(_) => match e.catalog() {
            Some(CatalogError::NoTable(_) | CatalogError::NoView(_)) => Status::not_found(text),
            Some(CatalogError::TableExists(_) | CatalogError::ViewExists(_)) => {
                Status::already_exists(text)
            }
            Some(_) => Status::failed_precondition(text),
            None => Status::internal(text),
        },
    }
}
