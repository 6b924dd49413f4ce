//! The gRPC admin API (tonic): SQL, typed DDL, table and consumer status, and health.
//! Errors become `tonic::Status` in one place, here.

mod alter;
pub mod convert;
pub mod executor;
pub mod fanout;
pub mod insert;
mod named_collections;
mod reset_offsets;
pub mod service;

/// Largest gRPC message either way: query results can be large.
pub const GRPC_MESSAGE_MAX: usize = 256 * 1024 * 1024;

use tonic::Status;

use crate::catalog::CatalogError;
use crate::cluster::ClusterError;
use executor::ExecError;

/// A coordinator's error by its kind: ask again later, not found, refused, failed.
pub fn cluster_status(e: &ClusterError) -> Status {
    crate::raft::service::status_of(e.kind(), e.to_string())
}

pub fn to_status(e: &ExecError) -> Status {
    let text = e.to_string();
    match e {
        ExecError::Sql(_)
        | ExecError::Ddl(_)
        | ExecError::Preflight(_)
        | ExecError::Format(_)
        | ExecError::Alter(_) => Status::invalid_argument(text),
        ExecError::Query(crate::query::QueryError::NoTable(_)) => Status::not_found(text),
        ExecError::Query(_) | ExecError::Insert { .. } => Status::invalid_argument(text),
        ExecError::ResetRefused { .. } => Status::failed_precondition(text),
        ExecError::ResetKafka { source, .. } => match source {
            crate::ingest::offset_reset::OffsetResetError::Kafka { .. } => {
                Status::unavailable(text)
            }
            crate::ingest::offset_reset::OffsetResetError::NoTopic(_) => {
                Status::failed_precondition(text)
            }
            crate::ingest::offset_reset::OffsetResetError::NoPartition { .. } => {
                Status::invalid_argument(text)
            }
        },
        ExecError::NamedCollection(c) => {
            use crate::catalog::named_collections::CollectionError;
            match c {
                CollectionError::Missing(_) => Status::not_found(text),
                CollectionError::Exists(_) => Status::already_exists(text),
                _ => Status::failed_precondition(text),
            }
        }
        ExecError::Internal(_) => Status::internal(text),
        ExecError::Output(crate::format::output::OutputError::UnknownFormat(_)) => {
            Status::invalid_argument(text)
        }
        ExecError::Output(_) => Status::internal(text),
        ExecError::Sink(
            crate::ingest::sink::SinkError::NotAnEnumMember { .. }
            | crate::ingest::sink::SinkError::Envelope { .. }
            | crate::ingest::sink::SinkError::NotKafka(_),
        ) => Status::invalid_argument(text),
        // The broker did not take the rows: retry later (some may have arrived).
        ExecError::Sink(crate::ingest::sink::SinkError::Delivery { .. }) => {
            Status::unavailable(text)
        }
        ExecError::Sink(_) => Status::failed_precondition(text),
        ExecError::Inserting(i) => insert_status(i, text),
        ExecError::Cluster(c) if c.catalog().is_none() => cluster_status(c),
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

/// An insert's error: the write's own kind when the table's group failed it; bad input
/// refused; the broker or a view's push failing is worth a retry.
fn insert_status(e: &insert::InsertError, text: String) -> Status {
    use insert::InsertError as E;
    match e {
        E::Write { source, .. } => crate::raft::service::status_of(source.kind(), text),
        E::Push { .. } => Status::unavailable(text),
        E::Sink(sink) if matches!(**sink, crate::ingest::sink::SinkError::Delivery { .. }) => {
            Status::unavailable(text)
        }
        E::Stream { .. } => Status::cancelled(text),
        E::Encode { .. } => Status::internal(text),
        _ => Status::invalid_argument(text),
    }
}
