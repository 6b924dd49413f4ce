//! A Protobuf table's schema: `kafka_schema`'s `.proto` file compiled at CREATE, and the
//! match of the table's columns to the message's fields, checked there once.
//!
//! Compiling happens on the node that runs CREATE; the result (a `FileDescriptorSet`)
//! travels with the table, so decoding never reads the schema directory again.
//! A column reaches a field of a nested message by the path of names, as ClickHouse
//! names it: `inner.x` or `inner_x`.
//! Invariant: a table whose schema compiled has a field for every column, of a kind the
//! column can hold (`fits`), so decoding and encoding only meet bad values, never a bad
//! mapping.

use std::path::{Component, Path};

use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor};

use crate::catalog::kafka_settings::{CompiledSchema, SchemaRef};
use crate::catalog::{ChType, Column};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    #[error("kafka_schema '{schema}': the file must be a relative path inside format_schema_path ({dir})")]
    OutsideDir { schema: String, dir: String },
    #[error("kafka_schema '{schema}': file {file} not found in format_schema_path ({dir})")]
    FileNotFound {
        schema: String,
        file: String,
        dir: String,
    },
    #[error("kafka_schema '{schema}': {file} does not compile: {reason}")]
    Compile {
        schema: String,
        file: String,
        reason: String,
    },
    #[error("kafka_schema '{schema}': {file} has no message type {message} (it has: {known})")]
    NoMessage {
        schema: String,
        file: String,
        message: String,
        known: String,
    },
    #[error("kafka_schema '{schema}': column {column} matches no field of message {message} (fields: {fields})")]
    NoField {
        schema: String,
        column: String,
        message: String,
        fields: String,
    },
    /// `field` is the field and its type, `price (double)`.
    #[error("kafka_schema '{schema}': column {column} cannot hold field {field}: {reason}")]
    Mismatch {
        schema: String,
        column: String,
        field: String,
        reason: String,
    },
    #[error("the compiled schema of message {message} does not load: {reason}")]
    Corrupt { message: String, reason: String },
}

/// Compiles `schema` from `dir` and checks `columns` against its message.
pub fn compile(
    schema: &SchemaRef,
    dir: &Path,
    columns: &[Column],
) -> Result<CompiledSchema, SchemaError> {
    let shown = schema.to_string();
    let file = if Path::new(&schema.file).extension().is_some() {
        schema.file.clone()
    } else {
        format!("{}.proto", schema.file)
    };
    let relative = Path::new(&file);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(SchemaError::OutsideDir {
            schema: shown,
            dir: dir.display().to_string(),
        });
    }
    if !dir.join(relative).is_file() {
        return Err(SchemaError::FileNotFound {
            schema: shown,
            file,
            dir: dir.display().to_string(),
        });
    }
    let compile_error = |e: protox::Error| SchemaError::Compile {
        schema: shown.clone(),
        file: file.clone(),
        reason: e.to_string(),
    };
    let mut compiler = protox::Compiler::new([dir]).map_err(compile_error)?;
    compiler.include_imports(true);
    compiler.open_file(relative).map_err(compile_error)?;
    let pool = compiler.descriptor_pool();
    let message = find_message(&pool, &file, &schema.message).ok_or_else(|| {
        let known: Vec<String> = pool
            .all_messages()
            .filter(|m| m.parent_file().name() == file)
            .map(|m| m.full_name().to_string())
            .collect();
        SchemaError::NoMessage {
            schema: shown.clone(),
            file: file.clone(),
            message: schema.message.clone(),
            known: known.join(", "),
        }
    })?;
    field_map(&message, columns, &shown)?;
    Ok(CompiledSchema {
        message: message.full_name().to_string(),
        descriptor_set: compiler.encode_file_descriptor_set(),
    })
}

/// The message type `name` of `file`: by its full name, or by its name inside the file's
/// package (`Order` for `shop.Order`), as ClickHouse looks it up.
fn find_message(pool: &DescriptorPool, file: &str, name: &str) -> Option<MessageDescriptor> {
    let name = name.trim_start_matches('.');
    pool.all_messages()
        .filter(|m| m.parent_file().name() == file)
        .find(|m| {
            let package = m.parent_file().package_name().to_string();
            let local = m
                .full_name()
                .strip_prefix(&package)
                .map(|n| n.trim_start_matches('.'))
                .unwrap_or(m.full_name());
            m.full_name() == name || local == name
        })
}

/// The message type of a compiled schema.
pub fn load(compiled: &CompiledSchema) -> Result<MessageDescriptor, SchemaError> {
    let corrupt = |reason: String| SchemaError::Corrupt {
        message: compiled.message.clone(),
        reason,
    };
    let pool = DescriptorPool::decode(compiled.descriptor_set.as_slice())
        .map_err(|e| corrupt(e.to_string()))?;
    pool.get_message_by_name(&compiled.message)
        .ok_or_else(|| corrupt("the message type is missing".into()))
}

/// Where a column's value is: `leaf`, a field of the top message or of the nested
/// message reached through the `parents` fields, outermost first.
#[derive(Debug, Clone)]
pub struct FieldPath {
    pub parents: Vec<FieldDescriptor>,
    pub leaf: FieldDescriptor,
}

impl FieldPath {
    /// The path as a column names it, `inner.x`.
    pub fn name(&self) -> String {
        self.parents
            .iter()
            .chain([&self.leaf])
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// The path named by `name`: a field's name ignoring case, or a singular nested message
/// field's name, `.` or `_`, and a path inside that message.
fn find_path(message: &MessageDescriptor, name: &str) -> Option<FieldPath> {
    if let Some(field) = message
        .fields()
        .find(|f| f.name().eq_ignore_ascii_case(name))
    {
        return Some(FieldPath {
            parents: Vec::new(),
            leaf: field,
        });
    }
    message.fields().find_map(|field| {
        let Kind::Message(inner) = field.kind() else {
            return None;
        };
        if field.is_list() || field.is_map() {
            return None;
        }
        let n = field.name().len();
        let head = name.get(..n)?;
        let rest = name.get(n..)?;
        let rest = rest.strip_prefix('.').or_else(|| rest.strip_prefix('_'))?;
        if !head.eq_ignore_ascii_case(field.name()) {
            return None;
        }
        let mut path = find_path(&inner, rest)?;
        path.parents.insert(0, field);
        Some(path)
    })
}

/// The field path of each column, matched by name ignoring case (as ClickHouse does),
/// each checked to end at a field the column can hold.
pub fn field_map(
    message: &MessageDescriptor,
    columns: &[Column],
    schema: &str,
) -> Result<Vec<FieldPath>, SchemaError> {
    columns
        .iter()
        .map(|column| {
            let path = find_path(message, &column.name).ok_or_else(|| SchemaError::NoField {
                schema: schema.to_string(),
                column: column.name.clone(),
                message: message.full_name().to_string(),
                fields: message
                    .fields()
                    .map(|f| f.name().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
            fits(&path.leaf, &column.ty).map_err(|why| {
                let field_type = field_type(&path.leaf);
                SchemaError::Mismatch {
                    schema: schema.to_string(),
                    column: column.name.clone(),
                    field: format!("{} ({field_type})", path.name()),
                    reason: why
                        .unwrap_or_else(|| format!("{} does not take {field_type}", column.ty)),
                }
            })?;
            Ok(path)
        })
        .collect()
}

/// The field's type as a .proto file spells it.
fn field_type(field: &FieldDescriptor) -> String {
    let kind = match field.kind() {
        Kind::Message(m) => m.full_name().to_string(),
        Kind::Enum(e) => e.full_name().to_string(),
        other => format!("{other:?}").to_ascii_lowercase(),
    };
    if field.is_map() {
        "map".into()
    } else if field.is_list() {
        format!("repeated {kind}")
    } else {
        kind
    }
}

/// Whether a column of type `ty` can hold the field, both ways: read from a message and
/// written into one. `Err(Some(reason))` explains a refusal the type names alone do not.
fn fits(field: &FieldDescriptor, ty: &ChType) -> Result<(), Option<String>> {
    if field.is_map() {
        return Err(Some("map fields are not supported".into()));
    }
    match ty.base() {
        ChType::Array(inner) if field.is_list() => scalar_fits(&field.kind(), inner),
        ChType::Array(_) => Err(Some("an Array column needs a repeated field".into())),
        _ if field.is_list() => Err(Some("a repeated field needs an Array column".into())),
        base => scalar_fits(&field.kind(), base),
    }
}

fn scalar_fits(kind: &Kind, ty: &ChType) -> Result<(), Option<String>> {
    let ty = ty.base();
    let integer = matches!(
        ty,
        ChType::Int8
            | ChType::Int16
            | ChType::Int32
            | ChType::Int64
            | ChType::UInt8
            | ChType::UInt16
            | ChType::UInt32
            | ChType::UInt64
    );
    let float = matches!(ty, ChType::Float32 | ChType::Float64);
    let ok =
        match kind {
            Kind::Message(_) => return Err(Some(
                "a nested message goes into columns named after its fields (inner.x or inner_x)"
                    .into(),
            )),
            Kind::Int32
            | Kind::Int64
            | Kind::Uint32
            | Kind::Uint64
            | Kind::Sint32
            | Kind::Sint64
            | Kind::Fixed32
            | Kind::Fixed64
            | Kind::Sfixed32
            | Kind::Sfixed64 => {
                integer
                    || float
                    || matches!(
                        ty,
                        ChType::Bool
                            | ChType::String
                            | ChType::Enum { .. }
                            | ChType::Date
                            | ChType::DateTime
                    )
            }
            Kind::Float | Kind::Double => float || matches!(ty, ChType::String),
            Kind::Bool => integer || matches!(ty, ChType::Bool | ChType::String),
            // Text is read as ClickHouse reads text formats, into any scalar column.
            Kind::String | Kind::Bytes => !matches!(ty, ChType::Array(_)),
            Kind::Enum(e) => match ty {
                ChType::Enum { members, .. } => {
                    let missing: Vec<String> = e
                        .values()
                        .filter(|v| {
                            !members
                                .iter()
                                .any(|(name, n)| name == v.name() || i32::from(*n) == v.number())
                        })
                        .map(|v| format!("{} = {}", v.name(), v.number()))
                        .collect();
                    if !missing.is_empty() {
                        return Err(Some(format!(
                            "enum values {} match no member by name or number",
                            missing.join(", ")
                        )));
                    }
                    true
                }
                _ => integer || matches!(ty, ChType::String),
            },
        };
    if ok {
        Ok(())
    } else {
        Err(None)
    }
}
