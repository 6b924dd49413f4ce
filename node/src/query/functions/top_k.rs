//! `topK(N)(x)`: the N most frequent values of x, most frequent first, NULLs skipped.
//!
//! ClickHouse answers with the Space-Saving sketch, which is exact while the group has no
//! more distinct values than its table (N * 3 by default) and approximate beyond. Sluice
//! counts exactly; values of equal count come in first-seen order (ClickHouse leaves their
//! order unspecified). Planned as `topK(x, N)`: the rewrite moves the parameter.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, UInt64Array};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

/// ClickHouse's default N.
pub const DEFAULT_N: u64 = 10;

pub fn udaf() -> AggregateUDF {
    AggregateUDF::new_from_impl(TopK {
        signature: Signature::any(2, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct TopK {
    signature: Signature,
}

impl AggregateUDFImpl for TopK {
    fn name(&self) -> &str {
        "topK"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let [value, n] = arg_types else {
            return Err(DataFusionError::Plan(
                "topK takes one argument and one parameter N".into(),
            ));
        };
        if !n.is_integer() {
            return Err(DataFusionError::Plan(format!(
                "topK: N must be an integer, not {n}"
            )));
        }
        Ok(DataType::List(Arc::new(Field::new_list_field(
            value.clone(),
            true,
        ))))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let DataType::List(item) = args.return_field.data_type() else {
            return Err(DataFusionError::Internal("topK returns a list".into()));
        };
        Ok(Box::new(TopKAccumulator {
            item: item.data_type().clone(),
            n: None,
            counts: HashMap::new(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let value = args.input_fields[0].data_type().clone();
        Ok(vec![
            Arc::new(Field::new_list(
                "topk_values",
                Field::new_list_field(value, true),
                true,
            )),
            Arc::new(Field::new_list(
                "topk_counts",
                Field::new_list_field(DataType::UInt64, true),
                true,
            )),
            Arc::new(Field::new("topk_n", DataType::UInt64, true)),
        ])
    }
}

#[derive(Debug)]
struct TopKAccumulator {
    item: DataType,
    n: Option<u64>,
    /// value -> (count, order of first sight)
    counts: HashMap<ScalarValue, (u64, usize)>,
}

impl TopKAccumulator {
    fn add(&mut self, value: ScalarValue, count: u64) {
        let next = self.counts.len();
        self.counts.entry(value).or_insert((0, next)).0 += count;
    }

    fn set_n(&mut self, n: Option<u64>) -> Result<()> {
        match (self.n, n) {
            (_, None) => Ok(()),
            (None, Some(n)) => {
                self.n = Some(n);
                Ok(())
            }
            (Some(a), Some(b)) if a == b => Ok(()),
            _ => Err(DataFusionError::Execution(
                "topK: N must be a constant".into(),
            )),
        }
    }

    fn ranked(&self) -> Vec<(ScalarValue, u64, usize)> {
        let mut all: Vec<_> = self
            .counts
            .iter()
            .map(|(v, (c, o))| (v.clone(), *c, *o))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
        all
    }
}

fn first_n(array: &ArrayRef) -> Result<Option<u64>> {
    let n = arrow::compute::cast(array, &DataType::UInt64)?;
    let n = n.as_primitive::<arrow::datatypes::UInt64Type>();
    Ok(n.iter().flatten().next())
}

impl Accumulator for TopKAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let [value, n] = values else {
            return Err(DataFusionError::Internal("topK takes two columns".into()));
        };
        self.set_n(first_n(n)?)?;
        for i in 0..value.len() {
            if value.is_valid(i) {
                self.add(ScalarValue::try_from_array(value, i)?, 1);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let n = self.n.unwrap_or(DEFAULT_N);
        let values: Vec<ScalarValue> = self
            .ranked()
            .into_iter()
            .take(usize::try_from(n).unwrap_or(usize::MAX))
            .map(|(v, _, _)| v)
            .collect();
        Ok(ScalarValue::List(ScalarValue::new_list_nullable(
            &values, &self.item,
        )))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.counts.len() * (std::mem::size_of::<ScalarValue>() + 32)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let ranked = self.ranked();
        let values: Vec<ScalarValue> = ranked.iter().map(|(v, _, _)| v.clone()).collect();
        let counts: Vec<ScalarValue> = ranked
            .iter()
            .map(|(_, c, _)| ScalarValue::UInt64(Some(*c)))
            .collect();
        Ok(vec![
            ScalarValue::List(ScalarValue::new_list_nullable(&values, &self.item)),
            ScalarValue::List(ScalarValue::new_list_nullable(&counts, &DataType::UInt64)),
            ScalarValue::UInt64(self.n),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [values, counts, n] = states else {
            return Err(DataFusionError::Internal(
                "topK's state has three columns".into(),
            ));
        };
        self.set_n(first_n(n)?)?;
        let values = values.as_list::<i32>();
        let counts = counts.as_list::<i32>();
        for row in 0..values.len() {
            if values.is_null(row) {
                continue;
            }
            let v = values.value(row);
            let c = counts.value(row);
            let c: &UInt64Array = c.as_primitive();
            for i in 0..v.len() {
                self.add(ScalarValue::try_from_array(&v, i)?, c.value(i));
            }
        }
        Ok(())
    }
}
