//! Resize ops against PyTorch / Pillow golden values (`tests/golden/resize.py`).

use candle_core::{D, DType, Device, Tensor, Var};
use vssl_core::ops::resize::{
    nearest_indices_pil, nearest_indices_torch, resize_bilinear, resize_bilinear_portable,
    resize_nearest, resize_nearest_pil,
};
use vssl_core::testing::{Golden, Tolerance, assert_close};
use vssl_core::{Error, Result};

type Op = dyn Fn(&Tensor) -> Result<Tensor>;

/// Runs `f` on a `Var` made from `x`; returns the output and `d sum(out · w) / dx`.
fn forward_backward(f: &Op, x: &Tensor, w: &Tensor) -> Result<(Tensor, Tensor)> {
    let v = Var::from_tensor(x)?;
    let y = f(v.as_tensor())?;
    let grads = y.mul(w)?.sum_all()?.backward()?;
    let g = grads
        .get(v.as_tensor())
        .cloned()
        .ok_or_else(|| Error::op("test", "no gradient for x"))?;
    Ok((y, g))
}

/// The case names `<prefix><case>_out` in the golden file, i.e. every `<case>`.
fn cases(g: &Golden, prefix: &str) -> Vec<String> {
    g.names()
        .iter()
        .filter_map(|n| n.strip_prefix(prefix)?.strip_suffix("_out").map(str::to_string))
        .collect()
}

fn check_bilinear(portable: bool) -> Result<()> {
    let g = Golden::workspace("resize")?;
    let cs = cases(&g, "bl_");
    assert_eq!(cs.len(), 14, "7 size cases x 2 align_corners: {cs:?}");
    for case in cs {
        let (name, ac) = case
            .rsplit_once("_ac")
            .ok_or_else(|| Error::op("test", format!("bad case {case}")))?;
        let align_corners = ac == "1";
        let x = g.f32(&format!("bl_{name}_x"))?;
        let w = g.f32(&format!("bl_{case}_w"))?;
        let want = g.get(&format!("bl_{case}_out"))?;
        let want_grad = g.get(&format!("bl_{case}_grad"))?;
        let size = (want.dim(2)?, want.dim(3)?);
        let f = move |t: &Tensor| {
            if portable {
                resize_bilinear_portable(t, size, align_corners)
            } else {
                resize_bilinear(t, size, align_corners)
            }
        };
        let (y, gx) = forward_backward(&f, &x, &w)?;
        let tag = format!("{case} portable={portable}");
        assert_close(&format!("{tag} out"), &y, &want, Tolerance::SINGLE_OP)?;
        assert_close(&format!("{tag} grad"), &gx, &want_grad, Tolerance::SINGLE_OP)?;
    }
    Ok(())
}

#[test]
fn bilinear_cpu_kernel_matches_torch() -> Result<()> {
    check_bilinear(false)
}

#[test]
fn bilinear_portable_matches_torch() -> Result<()> {
    check_bilinear(true)
}
