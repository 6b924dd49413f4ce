//! ClickHouse column types, their textual form, and their Arrow representation.
//!
//! A type is parsed once, at the DDL edge, into [`ChType`]; everything deeper works with
//! the typed value or with the Arrow [`DataType`] it maps to. Invariant: `parse(t.to_string())`
//! gives back `t`, because the catalog stores types by their canonical text.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};
use serde::{Deserialize, Serialize};

/// A column type as ClickHouse spells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ChType {
    Int8,
    Int16,
    Int32,
    Int64,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    Float32,
    Float64,
    Bool,
    String,
    Date,
    DateTime,
    /// `Enum8` or `Enum16`; `Enum(...)` picks the narrowest width that holds its values.
    Enum {
        wide: bool,
        members: Vec<(String, i16)>,
    },
    LowCardinality(Box<ChType>),
    Nullable(Box<ChType>),
    Array(Box<ChType>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    #[error("unknown type '{0}' (supported: Int8..Int64, UInt8..UInt64, Float32, Float64, Bool, String, Date, DateTime, Enum, Enum8, Enum16, LowCardinality(T), Nullable(T), Array(T))")]
    Unknown(String),
    #[error("type '{ty}': {reason}")]
    Invalid { ty: String, reason: String },
    #[error("type '{0}' is not complete")]
    Truncated(String),
}

impl ChType {
    /// Parses a type such as `Array(LowCardinality(String))` or `Enum('a' = 1, 'b' = 2)`.
    pub fn parse(text: &str) -> Result<ChType, TypeError> {
        let mut p = TypeParser { src: text, pos: 0 };
        let ty = p.parse_type()?;
        p.skip_ws();
        if p.pos != text.len() {
            return Err(TypeError::Invalid {
                ty: text.to_string(),
                reason: format!("unexpected '{}'", &text[p.pos..]),
            });
        }
        Ok(ty)
    }

    /// The Arrow type of the column's values. LowCardinality is a storage hint in
    /// ClickHouse; compressed Arrow IPC blocks already store repeated strings cheaply, so
    /// it maps to plain Utf8 and queries see ordinary strings. Enums are stored by name.
    pub fn arrow_type(&self) -> DataType {
        match self {
            ChType::Int8 => DataType::Int8,
            ChType::Int16 => DataType::Int16,
            ChType::Int32 => DataType::Int32,
            ChType::Int64 => DataType::Int64,
            ChType::UInt8 => DataType::UInt8,
            ChType::UInt16 => DataType::UInt16,
            ChType::UInt32 => DataType::UInt32,
            ChType::UInt64 => DataType::UInt64,
            ChType::Float32 => DataType::Float32,
            ChType::Float64 => DataType::Float64,
            ChType::Bool => DataType::Boolean,
            ChType::String | ChType::Enum { .. } => DataType::Utf8,
            ChType::Date => DataType::Date32,
            ChType::DateTime => DataType::Timestamp(TimeUnit::Second, None),
            ChType::LowCardinality(inner) | ChType::Nullable(inner) => inner.arrow_type(),
            ChType::Array(inner) => DataType::List(Arc::new(Field::new(
                "item",
                inner.arrow_type(),
                inner.is_nullable(),
            ))),
        }
    }

    pub fn is_nullable(&self) -> bool {
        match self {
            ChType::Nullable(_) => true,
            ChType::LowCardinality(inner) => inner.is_nullable(),
            _ => false,
        }
    }

    /// The type with `Nullable` and `LowCardinality` wrappers removed.
    pub fn base(&self) -> &ChType {
        match self {
            ChType::LowCardinality(inner) | ChType::Nullable(inner) => inner.base(),
            other => other,
        }
    }

    /// Enum members when the (unwrapped) type is an enum.
    pub fn enum_members(&self) -> Option<&[(String, i16)]> {
        match self.base() {
            ChType::Enum { members, .. } => Some(members),
            _ => None,
        }
    }

    /// The name ClickHouse stores for an omitted Enum value: the member numbered 0 when
    /// there is one, else the first declared.
    pub fn enum_default(members: &[(String, i16)]) -> Option<&str> {
        members
            .iter()
            .find(|(_, v)| *v == 0)
            .or_else(|| members.first())
            .map(|(n, _)| n.as_str())
    }

    /// The Arrow field for a column of this type.
    pub fn arrow_field(&self, name: &str) -> Field {
        Field::new(name, self.arrow_type(), self.is_nullable())
    }
}

impl fmt::Display for ChType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChType::Int8 => f.write_str("Int8"),
            ChType::Int16 => f.write_str("Int16"),
            ChType::Int32 => f.write_str("Int32"),
            ChType::Int64 => f.write_str("Int64"),
            ChType::UInt8 => f.write_str("UInt8"),
            ChType::UInt16 => f.write_str("UInt16"),
            ChType::UInt32 => f.write_str("UInt32"),
            ChType::UInt64 => f.write_str("UInt64"),
            ChType::Float32 => f.write_str("Float32"),
            ChType::Float64 => f.write_str("Float64"),
            ChType::Bool => f.write_str("Bool"),
            ChType::String => f.write_str("String"),
            ChType::Date => f.write_str("Date"),
            ChType::DateTime => f.write_str("DateTime"),
            ChType::Enum { wide, members } => {
                f.write_str(if *wide { "Enum16(" } else { "Enum8(" })?;
                for (i, (name, value)) in members.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "'{}' = {}", escape_quoted(name), value)?;
                }
                f.write_str(")")
            }
            ChType::LowCardinality(inner) => write!(f, "LowCardinality({inner})"),
            ChType::Nullable(inner) => write!(f, "Nullable({inner})"),
            ChType::Array(inner) => write!(f, "Array({inner})"),
        }
    }
}

impl TryFrom<String> for ChType {
    type Error = TypeError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        ChType::parse(&value)
    }
}

impl From<ChType> for String {
    fn from(value: ChType) -> Self {
        value.to_string()
    }
}

fn escape_quoted(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

/// A small recursive-descent parser: ClickHouse type syntax is `Name` or `Name(args)`,
/// which is simpler than bending a SQL grammar's data types to it.
struct TypeParser<'a> {
    src: &'a str,
    pos: usize,
}

impl TypeParser<'_> {
    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.src.len() - trimmed.len();
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn invalid(&self, reason: impl Into<String>) -> TypeError {
        TypeError::Invalid {
            ty: self.src.to_string(),
            reason: reason.into(),
        }
    }

    fn ident(&mut self) -> Result<&str, TypeError> {
        self.skip_ws();
        let start = self.pos;
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        if len == 0 {
            return Err(if self.rest().is_empty() {
                TypeError::Truncated(self.src.to_string())
            } else {
                self.invalid(format!("expected a type name at '{}'", self.rest()))
            });
        }
        self.pos += len;
        Ok(&self.src[start..start + len])
    }

    fn expect(&mut self, c: char) -> Result<(), TypeError> {
        if self.eat(c) {
            Ok(())
        } else if self.rest().trim().is_empty() {
            Err(TypeError::Truncated(self.src.to_string()))
        } else {
            Err(self.invalid(format!("expected '{c}' at '{}'", self.rest().trim())))
        }
    }

    fn parse_type(&mut self) -> Result<ChType, TypeError> {
        let name = self.ident()?.to_string();
        let simple = match name.as_str() {
            "Int8" => Some(ChType::Int8),
            "Int16" => Some(ChType::Int16),
            "Int32" => Some(ChType::Int32),
            "Int64" => Some(ChType::Int64),
            "UInt8" => Some(ChType::UInt8),
            "UInt16" => Some(ChType::UInt16),
            "UInt32" => Some(ChType::UInt32),
            "UInt64" => Some(ChType::UInt64),
            "Float32" => Some(ChType::Float32),
            "Float64" => Some(ChType::Float64),
            "Bool" | "Boolean" => Some(ChType::Bool),
            "String" => Some(ChType::String),
            "Date" => Some(ChType::Date),
            _ => None,
        };
        if let Some(ty) = simple {
            return Ok(ty);
        }
        match name.as_str() {
            "DateTime" => {
                // A time zone argument is accepted for compatibility; values are UTC seconds.
                if self.eat('(') {
                    self.quoted()?;
                    self.expect(')')?;
                }
                Ok(ChType::DateTime)
            }
            "LowCardinality" | "Nullable" | "Array" => {
                self.expect('(')?;
                let inner = self.parse_type()?;
                self.expect(')')?;
                match name.as_str() {
                    "LowCardinality" => {
                        if !matches!(
                            inner.base(),
                            ChType::String
                                | ChType::Date
                                | ChType::DateTime
                                | ChType::Int8
                                | ChType::Int16
                                | ChType::Int32
                                | ChType::Int64
                                | ChType::UInt8
                                | ChType::UInt16
                                | ChType::UInt32
                                | ChType::UInt64
                                | ChType::Float32
                                | ChType::Float64
                        ) {
                            return Err(
                                self.invalid(format!("LowCardinality does not apply to {inner}"))
                            );
                        }
                        Ok(ChType::LowCardinality(Box::new(inner)))
                    }
                    "Nullable" => {
                        if matches!(inner, ChType::Nullable(_) | ChType::Array(_))
                            || matches!(inner, ChType::LowCardinality(_))
                        {
                            return Err(self.invalid(format!("Nullable({inner}) is not allowed")));
                        }
                        Ok(ChType::Nullable(Box::new(inner)))
                    }
                    _ => Ok(ChType::Array(Box::new(inner))),
                }
            }
            "Enum" | "Enum8" | "Enum16" => self.parse_enum(&name),
            _ => Err(TypeError::Unknown(name)),
        }
    }

    fn quoted(&mut self) -> Result<String, TypeError> {
        self.skip_ws();
        if !self.rest().starts_with('\'') {
            return Err(self.invalid(format!("expected a quoted string at '{}'", self.rest())));
        }
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        out.push(escaped);
                    }
                }
                '\'' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                other => out.push(other),
            }
        }
        Err(TypeError::Truncated(self.src.to_string()))
    }

    fn integer(&mut self) -> Result<i64, TypeError> {
        self.skip_ws();
        let len = self
            .rest()
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
            .map(|(i, _)| i)
            .unwrap_or(self.rest().len());
        let digits = &self.rest()[..len];
        let value = digits
            .parse::<i64>()
            .map_err(|_| self.invalid(format!("expected an integer at '{}'", self.rest())))?;
        self.pos += len;
        Ok(value)
    }

    fn parse_enum(&mut self, name: &str) -> Result<ChType, TypeError> {
        self.expect('(')?;
        let mut members: Vec<(String, i16)> = Vec::new();
        let mut next_auto: i64 = 1;
        loop {
            let label = self.quoted()?;
            let value = if self.eat('=') {
                self.integer()?
            } else {
                next_auto
            };
            next_auto = value + 1;
            let value = i16::try_from(value)
                .map_err(|_| self.invalid(format!("enum value {value} is out of range")))?;
            if members.iter().any(|(n, _)| *n == label) {
                return Err(self.invalid(format!("duplicate enum name '{label}'")));
            }
            if members.iter().any(|(_, v)| *v == value) {
                return Err(self.invalid(format!("duplicate enum value {value}")));
            }
            members.push((label, value));
            if self.eat(')') {
                break;
            }
            self.expect(',')?;
        }
        let fits8 = members.iter().all(|(_, v)| i8::try_from(*v).is_ok());
        let wide = match name {
            "Enum8" if !fits8 => {
                return Err(self.invalid("Enum8 values must fit in -128..127"));
            }
            "Enum8" => false,
            "Enum16" => true,
            _ => !fits8,
        };
        Ok(ChType::Enum { wide, members })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_guide_types() {
        let cases = [
            ("DateTime", DataType::Timestamp(TimeUnit::Second, None)),
            ("LowCardinality(String)", DataType::Utf8),
            ("UInt32", DataType::UInt32),
            ("UInt64", DataType::UInt64),
            ("String", DataType::Utf8),
            ("Date", DataType::Date32),
            ("Bool", DataType::Boolean),
            ("Float32", DataType::Float32),
        ];
        for (text, arrow) in cases {
            let ty = ChType::parse(text).expect("valid type");
            assert_eq!(ty.arrow_type(), arrow, "{text}");
            assert_eq!(ChType::parse(&ty.to_string()), Ok(ty));
        }
    }

    #[test]
    fn arrays_nullable_and_low_cardinality() {
        let ty = ChType::parse("Array(LowCardinality(String))").expect("valid");
        assert_eq!(
            ty.arrow_type(),
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, false)))
        );
        let ty = ChType::parse("Nullable(Int64)").expect("valid");
        assert!(ty.is_nullable());
        assert_eq!(ty.arrow_type(), DataType::Int64);
        let ty = ChType::parse("Array(Nullable(UInt8))").expect("valid");
        assert_eq!(
            ty.arrow_type(),
            DataType::List(Arc::new(Field::new("item", DataType::UInt8, true)))
        );
        assert!(ChType::parse("Nullable(Array(String))").is_err());
    }

    #[test]
    fn enums_by_name_and_width() {
        let ty = ChType::parse("Enum('none' = 0, 'open' = 1, 'closed' = 2)").expect("valid");
        assert_eq!(
            ty,
            ChType::Enum {
                wide: false,
                members: vec![("none".into(), 0), ("open".into(), 1), ("closed".into(), 2)]
            }
        );
        assert_eq!(
            ty.to_string(),
            "Enum8('none' = 0, 'open' = 1, 'closed' = 2)"
        );
        let wide = ChType::parse("Enum('a' = 1, 'b' = 300)").expect("valid");
        assert!(matches!(wide, ChType::Enum { wide: true, .. }));
        assert!(ChType::parse("Enum8('a' = 1, 'b' = 300)").is_err());
        let auto = ChType::parse("Enum16('a', 'b')").expect("valid");
        assert_eq!(auto.enum_members().map(|m| m[1].1), Some(2));
        assert!(ChType::parse("Enum('a' = 1, 'a' = 2)").is_err());
        assert!(ChType::parse("Enum('it\\'s' = 1)").is_ok());
    }

    #[test]
    fn errors_name_the_type() {
        assert_eq!(
            ChType::parse("Strin"),
            Err(TypeError::Unknown("Strin".into()))
        );
        assert!(matches!(
            ChType::parse("Array(String"),
            Err(TypeError::Truncated(_))
        ));
        assert!(ChType::parse("UInt32 garbage").is_err());
        assert!(ChType::parse("LowCardinality(Array(String))").is_err());
    }

    #[test]
    fn enum_default_prefers_zero() {
        let members = vec![("a".to_string(), 1), ("none".to_string(), 0)];
        assert_eq!(ChType::enum_default(&members), Some("none"));
        let members = vec![("x".to_string(), 5)];
        assert_eq!(ChType::enum_default(&members), Some("x"));
    }
}
