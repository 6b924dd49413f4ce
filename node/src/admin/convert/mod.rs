//! Proto <-> domain conversions of the admin API, and nothing else: typed requests into
//! statements and catalog commands, and results, tables, consumers and the cluster's
//! state into replies. Pure functions: the handlers in `service` and the asking side in
//! `fanout` fetch and call, these translate, so they never reach the executor, the
//! cluster or the network, and each can be tested on plain values.
//!
//! By what is converted:
//! - `requests`: typed DDL, drain and offset reset requests -> statements, commands, limits
//! - `results`: what the executor and catalog return -> replies
//! - `cluster`: consumers, membership and the cluster's replicated records <-> replies

mod cluster;
mod requests;
mod results;

pub use cluster::{
    cluster_status, consumer_from_proto, consumer_to_proto, dead_letter_from_proto,
    dead_letter_to_proto, drain_response, initialize_response, replica_from_status,
};
pub use requests::{create_table, create_view, drain_timeout, drop_command, reset_offsets};
pub use results::{
    ddl_response, describe_table, describe_view, execute_response, outcome_response,
    reset_offsets_response, result_set, table_info, view_info,
};
