//! Named, weighted loss terms and their sum.

use candle_core::Tensor;
use vssl_core::{Error, Result};

/// One named term: its unweighted value (a scalar tensor, part of the autograd graph) and the
/// weight it enters the total with.
#[derive(Debug, Clone)]
pub struct Term {
    /// Stable name (`intra`, `self_rec`, `concentration`, `inter`, `sparsity`, …), used in logs
    /// and metrics files.
    pub name: &'static str,
    /// Weight in the total.
    pub weight: f64,
    /// Unweighted value, a 0-d tensor.
    pub value: Tensor,
}

/// The terms of one step, in the order they were added.
#[derive(Debug, Clone, Default)]
pub struct Terms {
    entries: Vec<Term>,
}

impl Terms {
    /// No terms.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a term. A weight of zero still records the value (for logging) but it adds nothing
    /// to the total.
    ///
    /// # Errors
    /// [`Error::Op`] (`Terms::push`) when `value` is not a scalar or the name is already used.
    pub fn push(&mut self, name: &'static str, weight: f64, value: Tensor) -> Result<()> {
        if value.elem_count() != 1 {
            return Err(Error::op(
                "Terms::push",
                format!(
                    "term {name:?} must be a scalar, got shape {:?}",
                    value.dims()
                ),
            ));
        }
        if self.get(name).is_some() {
            return Err(Error::op(
                "Terms::push",
                format!("term {name:?} was added twice"),
            ));
        }
        let value = value.reshape(())?;
        self.entries.push(Term {
            name,
            weight,
            value,
        });
        Ok(())
    }

    /// The term called `name`.
    pub fn get(&self, name: &str) -> Option<&Term> {
        self.entries.iter().find(|t| t.name == name)
    }

    /// Every term, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = &Term> {
        self.entries.iter()
    }

    /// Number of terms.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no term.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `Σ weight · value` over the terms with a non-zero weight (differentiable).
    ///
    /// # Errors
    /// [`Error::Op`] (`Terms::total`) when there is no term with a non-zero weight.
    pub fn total(&self) -> Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for t in self.entries.iter().filter(|t| t.weight != 0.0) {
            let v = if t.weight == 1.0 {
                t.value.clone()
            } else {
                t.value.affine(t.weight, 0.0)?
            };
            total = Some(match total {
                None => v,
                Some(acc) => (acc + v)?,
            });
        }
        total.ok_or_else(|| Error::op("Terms::total", "no term with a non-zero weight"))
    }

    /// The unweighted values as `(name, value)` pairs, read back to the host.
    ///
    /// # Errors
    /// candle's error if a value cannot be read.
    pub fn values(&self) -> Result<Vec<(&'static str, f64)>> {
        self.entries
            .iter()
            .map(|t| {
                Ok((
                    t.name,
                    t.value
                        .to_dtype(candle_core::DType::F64)?
                        .to_scalar::<f64>()?,
                ))
            })
            .collect()
    }
}
