//! Test helpers: golden files written by PyTorch scripts, element-wise tolerance checks that
//! report the worst element, and the check that every trainable variable got a gradient.
//!
//! These live in the library (not behind `cfg(test)`) so that every vssl crate's tests, and
//! downstream users' tests, can use them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};

use crate::{Error, Result};

/// The tensors of one golden safetensors file, written by a script under `tests/golden/`.
pub struct Golden {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
}

impl Golden {
    /// Loads every tensor of `path` onto the CPU.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
            .map_err(|e| Error::file(&path, format!("cannot read golden file: {e}")))?;
        Ok(Self { path, tensors })
    }

    /// Loads `tests/golden/<name>.safetensors` of the workspace.
    pub fn workspace(name: &str) -> Result<Self> {
        Self::load(golden_dir().join(format!("{name}.safetensors")))
    }

    /// The tensor called `name`, as stored.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        self.tensors.get(name).cloned().ok_or_else(|| {
            let mut keys: Vec<_> = self.tensors.keys().cloned().collect();
            keys.sort();
            Error::file(
                &self.path,
                format!("no tensor {name:?}; the file holds {keys:?}"),
            )
        })
    }

    /// The tensor called `name`, converted to `f32` (how inputs enter the ops).
    pub fn f32(&self, name: &str) -> Result<Tensor> {
        Ok(self.get(name)?.to_dtype(DType::F32)?)
    }

    /// The scalar called `name` as an `f64` (a stored 0-d or 1-element tensor).
    pub fn scalar(&self, name: &str) -> Result<f64> {
        let t = self.get(name)?.to_dtype(DType::F64)?.flatten_all()?;
        let v = t.to_vec1::<f64>()?;
        v.first().copied().ok_or_else(|| {
            Error::file(
                &self.path,
                format!("tensor {name:?} is empty, expected a scalar"),
            )
        })
    }

    /// Every tensor name in the file.
    pub fn names(&self) -> Vec<String> {
        let mut keys: Vec<_> = self.tensors.keys().cloned().collect();
        keys.sort();
        keys
    }
}

/// `tests/golden/` of the workspace, where golden scripts and their fixtures live.
pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

/// Element-wise tolerance: `|got − want| ≤ atol + rtol·|want|`.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// Relative part.
    pub rtol: f64,
    /// Absolute part, as a fraction of `max |want|` over the whole tensor.
    pub atol_of_max: f64,
    /// Absolute part, in units of the values.
    pub atol: f64,
}

impl Tolerance {
    /// Single ops in f32 against a float64 reference: rtol 1e-5, atol 1e-6 · max|want|.
    pub const SINGLE_OP: Tolerance = Tolerance {
        rtol: 1e-5,
        atol_of_max: 1e-6,
        atol: 0.0,
    };

    /// Composite computations (a model, a loss, a training step) in f32 against float64:
    /// rtol 1e-4, atol 1e-6 · max|want|.
    pub const COMPOSITE: Tolerance = Tolerance {
        rtol: 1e-4,
        atol_of_max: 1e-6,
        atol: 0.0,
    };

    /// Same tolerance with another relative part.
    pub const fn with_rtol(self, rtol: f64) -> Self {
        Tolerance { rtol, ..self }
    }

    /// Same tolerance with another absolute part relative to `max |want|`.
    pub const fn with_atol_of_max(self, atol_of_max: f64) -> Self {
        Tolerance {
            atol_of_max,
            ..self
        }
    }

    /// Same tolerance with an absolute part in the values' units.
    pub const fn with_atol(self, atol: f64) -> Self {
        Tolerance { atol, ..self }
    }
}

/// The outcome of a successful [`assert_close`]: the worst element, for logs.
#[derive(Debug, Clone)]
pub struct CloseReport {
    /// Largest `|got − want|`.
    pub max_abs_err: f64,
    /// Largest `|got − want| / (atol + rtol·|want|)`; ≤ 1 means within tolerance.
    pub worst_ratio: f64,
    /// Flat index of the worst element.
    pub worst_index: usize,
}

/// Checks `|got − want| ≤ atol + rtol·|want|` element-wise (after conversion to f64).
///
/// Equal infinities match (ops mark masked entries with `-inf`); NaN never does.
/// Fails with the name, the shapes, the number of elements out of tolerance and the worst one
/// (its multi-index, both values and the bound) so that a failing numerics test says where.
pub fn assert_close(
    name: &str,
    got: &Tensor,
    want: &Tensor,
    tol: Tolerance,
) -> Result<CloseReport> {
    if got.dims() != want.dims() {
        return Err(Error::op(
            "assert_close",
            format!(
                "{name}: shape {:?} but expected {:?}",
                got.dims(),
                want.dims()
            ),
        ));
    }
    let g = got.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let w = want.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let max_want = w.iter().fold(0f64, |m, v| m.max(v.abs()));
    let atol = tol.atol + tol.atol_of_max * max_want;
    let mut report = CloseReport {
        max_abs_err: 0.0,
        worst_ratio: 0.0,
        worst_index: 0,
    };
    let mut bad = 0usize;
    for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
        let err = (a - b).abs();
        let bound = atol + tol.rtol * b.abs();
        // Equal infinities (masked entries) match; a NaN, or an infinity facing anything
        // else, is never within tolerance.
        let ratio = if a.is_infinite() && a == b {
            0.0
        } else if !a.is_finite() || !b.is_finite() {
            f64::INFINITY
        } else if bound > 0.0 {
            err / bound
        } else if err == 0.0 {
            0.0
        } else {
            f64::INFINITY
        };
        if ratio > 1.0 {
            bad += 1;
        }
        if ratio > report.worst_ratio || i == 0 {
            report.worst_ratio = ratio;
            report.worst_index = i;
        }
        if err.is_finite() {
            report.max_abs_err = report.max_abs_err.max(err);
        }
    }
    if bad > 0 {
        let i = report.worst_index;
        return Err(Error::op(
            "assert_close",
            format!(
                "{name}: {bad} of {} elements out of tolerance (rtol {}, atol {atol:.3e}); worst at {:?}: got {:.9e}, want {:.9e}, |diff| {:.3e} = {:.2}x the bound",
                g.len(),
                tol.rtol,
                unravel(i, got.dims()),
                g[i],
                w[i],
                (g[i] - w[i]).abs(),
                report.worst_ratio
            ),
        ));
    }
    Ok(report)
}

/// The multi-index of flat index `i` in a row-major tensor of shape `dims`.
pub fn unravel(mut i: usize, dims: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; dims.len()];
    for (k, &d) in dims.iter().enumerate().rev() {
        if d > 0 {
            idx[k] = i % d;
            i /= d;
        }
    }
    idx
}

/// Checks that every variable in `vars` received a gradient in `grads` that is present, finite
/// and not all zero.
///
/// candle's fused `softmax_last_dim`, `layer_norm` and `rms_norm` return no gradient at all and
/// say nothing: a model built on them trains only part of itself. Run this on every model and
/// loss. Variables that should get no gradient (frozen weights, BatchNorm running statistics) are
/// simply left out of `vars`.
pub fn assert_all_vars_have_grads(vars: &[(String, Var)], grads: &GradStore) -> Result<()> {
    let mut problems = Vec::new();
    for (name, var) in vars {
        match grads.get(var.as_tensor()) {
            None => problems.push(format!("{name} {:?}: no gradient", var.dims())),
            Some(g) => {
                let v = g.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
                if v.iter().any(|x| !x.is_finite()) {
                    problems.push(format!("{name} {:?}: gradient has NaN or Inf", var.dims()));
                } else if v.iter().all(|&x| x == 0.0) {
                    problems.push(format!("{name} {:?}: gradient is all zero", var.dims()));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::op(
            "assert_all_vars_have_grads",
            format!(
                "{} of {} variables got no usable gradient: {}",
                problems.len(),
                vars.len(),
                problems.join("; ")
            ),
        ))
    }
}

/// The named variables of a [`candle_nn::VarMap`], sorted by name, for
/// [`assert_all_vars_have_grads`].
pub fn named_vars(varmap: &candle_nn::VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock();
    let mut vars: Vec<(String, Var)> = match data {
        Ok(d) => d.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Err(poisoned) => poisoned
            .into_inner()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{D, Module};
    use candle_nn::{VarBuilder, VarMap};

    /// A two-layer net whose attention uses the given softmax.
    fn grads_of(fused_softmax: bool) -> Result<(Vec<(String, Var)>, GradStore)> {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let l1 = candle_nn::linear(4, 6, vb.pp("l1"))?;
        let l2 = candle_nn::linear(6, 3, vb.pp("l2"))?;
        let x = Tensor::arange(0f32, 20., &dev)?
            .reshape((5, 4))?
            .affine(0.1, -1.0)?;
        let h = l1.forward(&x)?;
        let a = if fused_softmax {
            candle_nn::ops::softmax_last_dim(&h)?
        } else {
            candle_nn::ops::softmax(&h, D::Minus1)?
        };
        let y = l2.forward(&a)?;
        let loss = y.sqr()?.sum_all()?;
        Ok((named_vars(&varmap), loss.backward()?))
    }

    #[test]
    fn grad_check_passes_a_model_with_differentiable_softmax() -> Result<()> {
        let (vars, grads) = grads_of(false)?;
        assert_eq!(vars.len(), 4);
        assert_all_vars_have_grads(&vars, &grads)
    }

    #[test]
    fn grad_check_catches_softmax_last_dim() -> Result<()> {
        let (vars, grads) = grads_of(true)?;
        let err = assert_all_vars_have_grads(&vars, &grads)
            .expect_err("softmax_last_dim drops l1's gradient; the check must say so")
            .to_string();
        assert!(
            err.contains("l1.weight") && err.contains("l1.bias"),
            "{err}"
        );
        assert!(
            !err.contains("l2.weight"),
            "l2 sits after the softmax and has a gradient: {err}"
        );
        Ok(())
    }

    #[test]
    fn assert_close_reports_worst_element() -> Result<()> {
        let dev = Device::Cpu;
        let want = Tensor::new(&[[1.0f64, 2.0], [3.0, 4.0]], &dev)?;
        let ok = Tensor::new(&[[1.0f32, 2.0], [3.0, 4.00001]], &dev)?;
        let r = assert_close("ok", &ok, &want, Tolerance::SINGLE_OP.with_rtol(1e-5))?;
        assert!(r.worst_ratio <= 1.0);
        let bad = Tensor::new(&[[1.0f32, 2.0], [3.1, 4.0]], &dev)?;
        let err = assert_close("bad", &bad, &want, Tolerance::SINGLE_OP)
            .expect_err("3.1 vs 3.0 is far outside 1e-5")
            .to_string();
        assert!(err.contains("[1, 0]") && err.contains("1 of 4"), "{err}");
        let nan = Tensor::new(&[[f32::NAN, 2.0], [3.0, 4.0]], &dev)?;
        assert!(assert_close("nan", &nan, &want, Tolerance::SINGLE_OP).is_err());
        Ok(())
    }
}
