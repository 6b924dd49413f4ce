//! `quantile(level)(x)` and `median(x)`: ClickHouse's interpolated quantile.
//!
//! ClickHouse keeps a reservoir of 8,192 values per group and, from the sorted sample,
//! answers `v[i] * (i + 1 - p) + v[i + 1] * (p - i)` at position `p = level * (n - 1)`.
//! Sluice keeps every value, so up to 8,192 values a group the answers are the same to the
//! last bit; beyond, ClickHouse's is a sample's and Sluice's the exact one. NULLs are
//! skipped; no values give NULL (`defaults.rs` turns that into nan where ClickHouse
//! answers nan). Planned as `quantile(x, level)`: the rewrite moves the parameter.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

/// The name the rewrite calls.
pub const NAME: &str = "quantile";

pub fn udaf() -> AggregateUDF {
    AggregateUDF::new_from_impl(Quantile {
        signature: Signature::any(2, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Quantile {
    signature: Signature,
}

impl AggregateUDFImpl for Quantile {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [value, level]
                if (value.is_numeric() || *value == DataType::Null) && level.is_numeric() =>
            {
                Ok(DataType::Float64)
            }
            [value, _] => Err(DataFusionError::Plan(format!(
                "quantile takes a number, not {value}"
            ))),
            _ => Err(DataFusionError::Plan(
                "quantile takes one argument and one parameter, the level".into(),
            )),
        }
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(QuantileAccumulator {
            level: None,
            values: Vec::new(),
        }))
    }

    fn state_fields(&self, _args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new_list(
                "quantile_values",
                Field::new_list_field(DataType::Float64, true),
                true,
            )),
            Arc::new(Field::new("quantile_level", DataType::Float64, true)),
        ])
    }
}

#[derive(Debug)]
struct QuantileAccumulator {
    level: Option<f64>,
    values: Vec<f64>,
}

impl QuantileAccumulator {
    fn set_level(&mut self, array: &ArrayRef) -> Result<()> {
        let levels = cast(array, &DataType::Float64)?;
        let Some(level) = levels.as_primitive::<Float64Type>().iter().flatten().next() else {
            return Ok(());
        };
        if !(0.0..=1.0).contains(&level) {
            return Err(DataFusionError::Execution(format!(
                "quantile: the level must be between 0 and 1, got {level}"
            )));
        }
        match self.level {
            Some(l) if l != level => Err(DataFusionError::Execution(
                "quantile: the level must be a constant".into(),
            )),
            _ => {
                self.level = Some(level);
                Ok(())
            }
        }
    }

    fn push(&mut self, array: &ArrayRef) -> Result<()> {
        let values = cast(array, &DataType::Float64)?;
        self.values
            .extend(values.as_primitive::<Float64Type>().iter().flatten());
        Ok(())
    }
}

/// ClickHouse's interpolation over sorted values.
pub fn interpolated(sorted: &[f64], level: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let index = (level * last as f64).clamp(0.0, last as f64);
    let left = index as usize;
    let right = left + 1;
    if right > last {
        return Some(sorted[left]);
    }
    let left_coef = right as f64 - index;
    let right_coef = index - left as f64;
    Some(sorted[left] * left_coef + sorted[right] * right_coef)
}

impl Accumulator for QuantileAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let [value, level] = values else {
            return Err(DataFusionError::Internal(
                "quantile takes two columns".into(),
            ));
        };
        self.set_level(level)?;
        self.push(value)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.values.sort_by(f64::total_cmp);
        let level = self.level.unwrap_or(0.5);
        Ok(ScalarValue::Float64(interpolated(&self.values, level)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.capacity() * std::mem::size_of::<f64>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values: Vec<ScalarValue> = self
            .values
            .iter()
            .map(|v| ScalarValue::Float64(Some(*v)))
            .collect();
        Ok(vec![
            ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Float64)),
            ScalarValue::Float64(self.level),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [values, level] = states else {
            return Err(DataFusionError::Internal(
                "quantile's state has two columns".into(),
            ));
        };
        self.set_level(level)?;
        let lists = values.as_list::<i32>();
        for row in 0..lists.len() {
            if lists.is_valid(row) {
                self.push(&lists.value(row))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::interpolated;

    #[test]
    fn interpolates_as_clickhouse() {
        let v: Vec<f64> = (0..10).map(f64::from).collect();
        // ClickHouse: quantile(0.3)(number) FROM numbers(10) = 2.6999999999999997,
        // quantiles(0.1, 0.5)(...) = [0.9, 4.5].
        assert_eq!(interpolated(&v, 0.3), Some(2.6999999999999997));
        assert_eq!(interpolated(&v, 0.1), Some(0.9));
        assert_eq!(interpolated(&v, 0.5), Some(4.5));
        assert_eq!(interpolated(&v, 1.0), Some(9.0));
        assert_eq!(interpolated(&[], 0.5), None);
    }
}
