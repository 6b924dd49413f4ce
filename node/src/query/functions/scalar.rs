//! One shape for Sluice's scalar functions: a ClickHouse name, a signature, a rule for the
//! result type, and a kernel over whole columns.
//!
//! Kernels see every argument as an array of the batch's length (constants expanded), which
//! keeps each function a plain loop; these functions are not hot enough to need a
//! constant-folding fast path.

use std::hash::{Hash, Hasher};

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The result type, from the argument types.
pub type ReturnRule = fn(&[DataType]) -> Result<DataType>;
/// The kernel: argument columns and the result type to produce.
pub type Kernel = fn(&[ArrayRef], &DataType) -> Result<ArrayRef>;
/// Argument coercion (what DataFusion should cast the arguments to), when the signature
/// is user-defined.
pub type Coerce = fn(&[DataType]) -> Result<Vec<DataType>>;

#[derive(Debug)]
pub struct ChScalar {
    name: &'static str,
    signature: Signature,
    ret: ReturnRule,
    kernel: Kernel,
    coerce: Option<Coerce>,
}

// Two functions are the same when their names are: the name is what a query calls.
impl PartialEq for ChScalar {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for ChScalar {}
impl Hash for ChScalar {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ChScalar {
    /// A function taking any arguments DataFusion passes as they are; `ret` and `kernel`
    /// refuse what they do not take, naming the function.
    pub fn udf(
        name: &'static str,
        arity: std::ops::RangeInclusive<usize>,
        ret: ReturnRule,
        kernel: Kernel,
    ) -> ScalarUDF {
        let signature = Signature::one_of(
            arity
                .map(datafusion::logical_expr::TypeSignature::Any)
                .collect(),
            Volatility::Immutable,
        );
        ScalarUDF::new_from_impl(ChScalar {
            name,
            signature,
            ret,
            kernel,
            coerce: None,
        })
    }

    /// A function whose arguments are first cast as `coerce` says.
    pub fn udf_coerced(
        name: &'static str,
        ret: ReturnRule,
        kernel: Kernel,
        coerce: Coerce,
    ) -> ScalarUDF {
        ScalarUDF::new_from_impl(ChScalar {
            name,
            signature: Signature::user_defined(Volatility::Immutable),
            ret,
            kernel,
            coerce: Some(coerce),
        })
    }
}

impl ScalarUDFImpl for ChScalar {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        (self.ret)(arg_types)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match self.coerce {
            Some(coerce) => coerce(arg_types),
            None => Ok(arg_types.to_vec()),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let ret = args.return_type().clone();
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let out = (self.kernel)(&arrays, &ret)?;
        Ok(ColumnarValue::Array(out))
    }
}

/// The error of a function given a type it does not take.
pub fn bad_type(function: &str, ty: &DataType) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Plan(format!(
        "function {function} does not take an argument of type {ty}"
    ))
}

/// The error of a function given the wrong number of arguments.
pub fn bad_arity(function: &str, expected: &str, got: usize) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Plan(format!(
        "function {function} takes {expected}, got {got}"
    ))
}
