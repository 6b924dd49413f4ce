//! How a Kafka table compresses the messages it writes: ClickHouse's
//! `kafka_compression_codec` and `kafka_compression_level`, checked when the table is
//! created so that a producer is never refused its configuration later.
//!
//! Reading needs no setting: the broker hands compressed batches to the consumer as
//! written, and librdkafka decompresses every codec Sluice is built with (gzip, snappy,
//! lz4, zstd).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::kafka_settings::SettingsError;

/// A codec of `kafka_compression_codec`, by librdkafka's name for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }

    /// The levels librdkafka takes for this codec, as ClickHouse documents them.
    fn levels(self) -> std::ops::RangeInclusive<i32> {
        match self {
            Codec::None | Codec::Snappy => 0..=0,
            Codec::Gzip => 0..=9,
            Codec::Lz4 | Codec::Zstd => 0..=12,
        }
    }
}

/// The producing side's compression. `codec: None` leaves librdkafka's default (no
/// compression), as an empty `kafka_compression_codec` does in ClickHouse; `level: None`
/// is ClickHouse's -1, the codec's own default level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Compression {
    pub codec: Option<Codec>,
    pub level: Option<i32>,
}

impl Compression {
    pub fn from_settings(map: &BTreeMap<&str, &str>) -> Result<Compression, SettingsError> {
        let codec = match map.get("kafka_compression_codec").map(|v| v.trim()) {
            None | Some("") => None,
            Some(text) => Some(
                Codec::ALL
                    .into_iter()
                    .find(|c| c.name().eq_ignore_ascii_case(text))
                    .ok_or_else(|| SettingsError::Invalid {
                        name: "kafka_compression_codec".into(),
                        value: text.into(),
                        reason: format!(
                            "unknown codec (supported: {})",
                            Codec::ALL.map(Codec::name).join(", ")
                        ),
                    })?,
            ),
        };
        let level = match map.get("kafka_compression_level").map(|v| v.trim()) {
            None | Some("-1") => None,
            Some(text) => {
                let invalid = |reason: String| SettingsError::Invalid {
                    name: "kafka_compression_level".into(),
                    value: text.into(),
                    reason,
                };
                let level: i32 = text.parse().map_err(|_| {
                    invalid("expected an integer, or -1 for the codec's default".into())
                })?;
                let Some(codec) = codec else {
                    return Err(invalid(
                        "needs kafka_compression_codec: a level without a codec compresses nothing"
                            .into(),
                    ));
                };
                if !codec.levels().contains(&level) {
                    let range = codec.levels();
                    return Err(invalid(format!(
                        "{} takes levels {}..={} (or -1 for its default)",
                        codec.name(),
                        range.start(),
                        range.end()
                    )));
                }
                Some(level)
            }
        };
        Ok(Compression { codec, level })
    }

    /// librdkafka producer properties; none when the table names no codec.
    pub fn producer_properties(&self) -> Vec<(&'static str, String)> {
        let mut props = Vec::new();
        if let Some(codec) = self.codec {
            props.push(("compression.codec", codec.name().to_string()));
        }
        if let Some(level) = self.level {
            props.push(("compression.level", level.to_string()));
        }
        props
    }

    /// The settings as a table's SETTINGS would name them, for DESCRIBE; empty by default.
    pub fn non_default(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(codec) = self.codec {
            out.push(("kafka_compression_codec", codec.name().to_string()));
        }
        if let Some(level) = self.level {
            out.push(("kafka_compression_level", level.to_string()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(items: &[(&str, &str)]) -> Result<Compression, SettingsError> {
        Compression::from_settings(&items.iter().copied().collect())
    }

    #[test]
    fn codecs_and_levels_become_producer_properties() {
        assert_eq!(parse(&[]).map(|c| c.producer_properties()), Ok(vec![]));
        let c = parse(&[
            ("kafka_compression_codec", "ZSTD"),
            ("kafka_compression_level", "7"),
        ])
        .expect("valid");
        assert_eq!(
            c.producer_properties(),
            vec![
                ("compression.codec", "zstd".to_string()),
                ("compression.level", "7".to_string())
            ]
        );
        let c = parse(&[
            ("kafka_compression_codec", "gzip"),
            ("kafka_compression_level", "-1"),
        ])
        .expect("valid");
        assert_eq!(c.level, None);
        assert_eq!(
            c.non_default(),
            vec![("kafka_compression_codec", "gzip".into())]
        );
    }

    #[test]
    fn a_wrong_codec_or_level_names_the_setting_and_the_range() {
        let err = parse(&[("kafka_compression_codec", "brotli")]).expect_err("codec");
        assert!(
            err.to_string()
                .contains("'kafka_compression_codec' = 'brotli'")
                && err.to_string().contains("gzip, snappy, lz4, zstd"),
            "{err}"
        );
        let err = parse(&[
            ("kafka_compression_codec", "gzip"),
            ("kafka_compression_level", "10"),
        ])
        .expect_err("level");
        assert!(err.to_string().contains("gzip takes levels 0..=9"), "{err}");
        let err = parse(&[
            ("kafka_compression_codec", "snappy"),
            ("kafka_compression_level", "1"),
        ])
        .expect_err("snappy has no levels");
        assert!(
            err.to_string().contains("snappy takes levels 0..=0"),
            "{err}"
        );
        let err = parse(&[("kafka_compression_level", "3")]).expect_err("no codec");
        assert!(
            err.to_string().contains("needs kafka_compression_codec"),
            "{err}"
        );
        let err = parse(&[
            ("kafka_compression_codec", "lz4"),
            ("kafka_compression_level", "high"),
        ])
        .expect_err("not a number");
        assert!(err.to_string().contains("expected an integer"), "{err}");
    }
}
