//! DAVIS J, F, statistics, sequences and dataset means against `tests/golden/davis_metrics.py`,
//! a transcription of the official evaluator's semantics (itself checked against the official
//! `davis2017` package during development: identical on every value of the file).
//!
//! Tolerance: the metrics are ratios of pixel counts and means of them, computed in f64 in the
//! same order as numpy up to summation order, so every value must match to 1e-12 absolute;
//! boundary maps and dilations must match exactly.

mod common;

use candle_core::Tensor;
use vssl_core::testing::Golden;
use vssl_data::frame::LabelMap;
use vssl_eval::Result;
use vssl_eval::metrics::davis::{
    BOUND_TH, BinaryMask, DavisResults, Disk, boundary_map, boundary_score, decay_bins,
    evaluate_dataset, evaluate_sequence, jaccard, statistics, tolerance_radius,
};

const TOL: f64 = 1e-12;

fn golden() -> Golden {
    Golden::workspace("davis_metrics").expect("tests/golden/davis_metrics.safetensors")
}

fn mask(t: &Tensor) -> Result<BinaryMask> {
    let rows = t.to_vec2::<u8>()?;
    let (h, w) = (rows.len(), rows[0].len());
    BinaryMask::new(w, h, rows.concat().into_iter().map(|v| v != 0).collect())
}

fn label_maps(t: &Tensor) -> Result<Vec<LabelMap>> {
    Ok(t.to_vec3::<u8>()?
        .into_iter()
        .map(|f| {
            let (h, w) = (f.len() as u32, f[0].len() as u32);
            LabelMap::from_raw(w, h, f.concat()).expect("frame size")
        })
        .collect())
}

fn f64s(g: &Golden, name: &str) -> Result<Vec<f64>> {
    Ok(g.get(name)?.flatten_all()?.to_vec1::<f64>()?)
}

fn close(what: &str, got: f64, want: f64) {
    let ok = (got.is_nan() && want.is_nan()) || (got - want).abs() <= TOL;
    assert!(ok, "{what}: got {got:.15}, want {want:.15}");
}

fn frame_count(g: &Golden) -> usize {
    (0..)
        .take_while(|k| g.get(&format!("frame{k:02}.gt")).is_ok())
        .count()
}

#[test]
fn frames_j_precision_recall_f() -> Result<()> {
    let g = golden();
    let n = frame_count(&g);
    assert!(n >= 20, "golden file has {n} frame cases");
    for k in 0..n {
        let key = |s: &str| format!("frame{k:02}.{s}");
        let gt = mask(&g.get(&key("gt"))?)?;
        let pred = mask(&g.get(&key("pred"))?)?;
        let bt = g.scalar(&key("bound_th"))?;
        let want = f64s(&g, &key("expected"))?;
        close(&format!("frame {k} J"), jaccard(&gt, &pred)?, want[0]);
        let s = boundary_score(&gt, &pred, bt)?;
        close(&format!("frame {k} precision"), s.precision, want[1]);
        close(&format!("frame {k} recall"), s.recall, want[2]);
        close(&format!("frame {k} F"), s.f, want[3]);
        let r = tolerance_radius(bt, gt.height(), gt.width())?;
        close(&format!("frame {k} radius"), r, want[4]);
    }
    Ok(())
}

#[test]
fn boundary_maps_and_dilations_match_seg2bmap_and_cv2() -> Result<()> {
    let g = golden();
    for k in 0..frame_count(&g) {
        let key = |s: &str| format!("frame{k:02}.{s}");
        let gt = mask(&g.get(&key("gt"))?)?;
        let bmap = boundary_map(&gt);
        assert_eq!(
            bmap,
            mask(&g.get(&key("gt_bmap"))?)?,
            "frame {k} boundary map"
        );
        let r = f64s(&g, &key("expected"))?[4];
        let dil = Disk::new(r)?.dilate(&bmap);
        assert_eq!(
            dil,
            mask(&g.get(&key("gt_dil"))?)?,
            "frame {k} dilation by disk({r})"
        );
    }
    Ok(())
}

#[test]
fn statistics_and_decay_bins() -> Result<()> {
    let g = golden();
    for n in 0..=12usize {
        let values = f64s(&g, &format!("stats{n:02}.values"))?;
        assert_eq!(values.len(), n);
        let want = f64s(&g, &format!("stats{n:02}.expected"))?;
        let s = statistics(&values);
        close(&format!("n={n} mean"), s.mean, want[0]);
        close(&format!("n={n} recall"), s.recall, want[1]);
        close(&format!("n={n} decay"), s.decay, want[2]);
        if n > 0 {
            let bins = g.get(&format!("stats{n:02}.bins"))?.to_vec2::<i64>()?;
            let got: Vec<Vec<i64>> = decay_bins(n)
                .iter()
                .map(|r| vec![r.start as i64, r.end as i64])
                .collect();
            assert_eq!(got, bins, "n={n} bins");
        }
    }
    Ok(())
}

/// A sequence as (name, gt frames, predicted frames).
type Sequence = (String, Vec<LabelMap>, Vec<LabelMap>);

/// The golden sequences.
fn sequences(g: &Golden) -> Result<Vec<Sequence>> {
    let mut out = Vec::new();
    for k in 0.. {
        let Ok(gt) = g.get(&format!("seq{k}.gt")) else {
            break;
        };
        out.push((
            format!("seq{k}"),
            label_maps(&gt)?,
            label_maps(&g.get(&format!("seq{k}.pred"))?)?,
        ));
    }
    Ok(out)
}

fn check_sequences(g: &Golden, results: &DavisResults) -> Result<()> {
    for (k, seq) in results.sequences.iter().enumerate() {
        let j = g.get(&format!("seq{k}.j"))?.to_vec2::<f64>()?;
        let f = g.get(&format!("seq{k}.f"))?.to_vec2::<f64>()?;
        let st = g.get(&format!("seq{k}.stats"))?.to_vec2::<f64>()?;
        assert_eq!(seq.objects.len(), j.len(), "seq{k} object count");
        for (o, obj) in seq.objects.iter().enumerate() {
            assert_eq!(obj.id as usize, o + 1);
            assert_eq!(obj.j.len(), j[o].len(), "seq{k} scored frames");
            for t in 0..obj.j.len() {
                close(&format!("seq{k} obj {} J[{t}]", o + 1), obj.j[t], j[o][t]);
                close(&format!("seq{k} obj {} F[{t}]", o + 1), obj.f[t], f[o][t]);
            }
            let got = [
                obj.j_stats.mean,
                obj.j_stats.recall,
                obj.j_stats.decay,
                obj.f_stats.mean,
                obj.f_stats.recall,
                obj.f_stats.decay,
            ];
            for (i, (&a, &b)) in got.iter().zip(&st[o]).enumerate() {
                close(&format!("seq{k} obj {} stat {i}", o + 1), a, b);
            }
        }
    }
    let s = &results.summary;
    let want = f64s(g, "summary")?;
    let got = [
        s.jf_mean, s.j_mean, s.j_recall, s.j_decay, s.f_mean, s.f_recall, s.f_decay,
    ];
    for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
        close(&format!("summary[{i}]"), a, b);
    }
    Ok(())
}

#[test]
fn sequences_in_memory() -> Result<()> {
    let g = golden();
    let seqs = sequences(&g)?;
    assert!(seqs.len() >= 6);
    let results = seqs
        .iter()
        .map(|(name, gt, pred)| evaluate_sequence(name, gt, pred, BOUND_TH))
        .collect::<Result<Vec<_>>>()?;
    let results = DavisResults::new(BOUND_TH, results);
    assert_eq!(results.summary.objects, 13);
    check_sequences(&g, &results)
}

#[test]
fn sequences_from_folders() -> Result<()> {
    let g = golden();
    let seqs = sequences(&g)?;
    let tmp = common::Tmp::new("golden");
    let (root, pred) = (tmp.path().join("davis"), tmp.path().join("pred"));
    common::write_davis(&root, &pred, &seqs, false);
    let names: Vec<String> = seqs.iter().map(|s| s.0.clone()).collect();
    let davis = vssl_data::dataset::Davis::open(&root, 2017, "480p", Some(&names))?;
    let results = evaluate_dataset(&davis, &pred, BOUND_TH)?;
    check_sequences(&g, &results)
}
