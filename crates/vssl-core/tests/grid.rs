//! Golden tests of `affine_grid` and `grid_sample` against PyTorch (tests/golden/grid.py), for
//! both the fast CPU kernel and the portable path, plus error and edge cases.

use candle_core::{DType, Device, Tensor, Var};
use vssl_core::Result;
use vssl_core::ops::grid::{affine_grid, grid_sample, grid_sample_portable};
use vssl_core::testing::{Golden, Tolerance, assert_close};

type SampleFn = fn(&Tensor, &Tensor, bool) -> Result<Tensor>;

const PATHS: [(&str, SampleFn); 2] = [("kernel", grid_sample), ("portable", grid_sample_portable)];

fn tag(ac: bool) -> &'static str {
    if ac { "ac1" } else { "ac0" }
}

/// Forward and both gradients of one golden grid_sample case, on one path.
fn check_sample_case(g: &Golden, case: &str, ac: bool, path: &str, f: SampleFn) -> Result<()> {
    let input = Var::from_tensor(&g.f32(&format!("{case}.input"))?)?;
    let grid = Var::from_tensor(&g.f32(&format!("{case}.grid"))?)?;
    let w = g.f32(&format!("{case}.w"))?;
    let out = f(input.as_tensor(), grid.as_tensor(), ac)?;
    let name = |what: &str| format!("{case} {path} {what}");
    assert_close(&name("out"), &out, &g.get(&format!("{case}.out"))?, Tolerance::SINGLE_OP)?;
    let grads = (out * w)?.sum_all()?.backward()?;
    let gi = grads
        .get(input.as_tensor())
        .ok_or_else(|| vssl_core::Error::op("test", "no input gradient"))?;
    let gg = grads
        .get(grid.as_tensor())
        .ok_or_else(|| vssl_core::Error::op("test", "no grid gradient"))?;
    assert_close(&name("grad_input"), gi, &g.get(&format!("{case}.grad_input"))?, Tolerance::SINGLE_OP)?;
    assert_close(&name("grad_grid"), gg, &g.get(&format!("{case}.grad_grid"))?, Tolerance::SINGLE_OP)?;
    Ok(())
}

fn check_sample_cases(prefix: &str) -> Result<()> {
    let g = Golden::workspace("grid")?;
    for ac in [true, false] {
        let case = format!("{prefix}_{}", tag(ac));
        for (path, f) in PATHS {
            check_sample_case(&g, &case, ac, path, f)?;
        }
    }
    Ok(())
}

#[test]
fn grid_sample_odd_sizes_match_pytorch() -> Result<()> {
    check_sample_cases("odd")
}

#[test]
fn grid_sample_even_sizes_match_pytorch() -> Result<()> {
    check_sample_cases("even")
}

#[test]
fn grid_sample_single_pixel_input_matches_pytorch() -> Result<()> {
    check_sample_cases("one")
}

#[test]
fn affine_grid_matches_pytorch() -> Result<()> {
    let g = Golden::workspace("grid")?;
    for ac in [true, false] {
        let case = format!("affine_{}", tag(ac));
        let theta = Var::from_tensor(&g.f32(&format!("{case}.theta"))?)?;
        let want = g.get(&format!("{case}.grid"))?;
        let (n, ho, wo, _) = want.dims4()?;
        let grid = affine_grid(theta.as_tensor(), (n, 3, ho, wo), ac)?;
        assert_close(&format!("{case} grid"), &grid, &want, Tolerance::SINGLE_OP)?;
        let grads = (grid * g.f32(&format!("{case}.w_grid"))?)?.sum_all()?.backward()?;
        let gt = grads
            .get(theta.as_tensor())
            .ok_or_else(|| vssl_core::Error::op("test", "no theta gradient"))?;
        assert_close(
            &format!("{case} grad_theta"),
            gt,
            &g.get(&format!("{case}.grad_theta_grid"))?,
            Tolerance::SINGLE_OP,
        )?;
    }
    Ok(())
}

#[test]
fn affine_grid_into_grid_sample_matches_pytorch() -> Result<()> {
    let g = Golden::workspace("grid")?;
    for ac in [true, false] {
        let case = format!("affine_{}", tag(ac));
        for (path, f) in PATHS {
            let theta = Var::from_tensor(&g.f32(&format!("{case}.theta"))?)?;
            let input = Var::from_tensor(&g.f32(&format!("{case}.input"))?)?;
            let want = g.get(&format!("{case}.out"))?;
            let (n, c, ho, wo) = want.dims4()?;
            let grid = affine_grid(theta.as_tensor(), (n, c, ho, wo), ac)?;
            let out = f(input.as_tensor(), &grid, ac)?;
            let name = |what: &str| format!("{case} {path} {what}");
            assert_close(&name("out"), &out, &want, Tolerance::SINGLE_OP)?;
            let grads = (out * g.f32(&format!("{case}.w"))?)?.sum_all()?.backward()?;
            let gt = grads
                .get(theta.as_tensor())
                .ok_or_else(|| vssl_core::Error::op("test", "no theta gradient"))?;
            let gi = grads
                .get(input.as_tensor())
                .ok_or_else(|| vssl_core::Error::op("test", "no input gradient"))?;
            assert_close(&name("grad_theta"), gt, &g.get(&format!("{case}.grad_theta"))?, Tolerance::SINGLE_OP)?;
            assert_close(&name("grad_input"), gi, &g.get(&format!("{case}.grad_input"))?, Tolerance::SINGLE_OP)?;
        }
    }
    Ok(())
}
