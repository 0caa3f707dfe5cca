//! The evaluator on the real DAVIS-2016 val tree, when `../shared/data/davis2016-val` is present
//! (it says so and passes when it is not): the GT scored against itself gives J = F = 1 on every
//! object, recall 1 and decay 0, through the real folder layout and mode-L masks.

use std::path::Path;

use vssl_eval::Result;
use vssl_eval::metrics::davis::{BOUND_TH, detect_year, evaluate_dataset};

const DAVIS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/davis2016-val"
);

#[test]
fn ground_truth_against_itself_is_perfect() -> Result<()> {
    let root = Path::new(DAVIS);
    if !root.is_dir() {
        println!("skipped: {DAVIS} is absent");
        return Ok(());
    }
    assert_eq!(detect_year(root, "480p")?, 2016);
    let names: Vec<String> = ["blackswan", "camel", "soapbox"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let davis = vssl_data::dataset::Davis::open(root, 2016, "480p", Some(&names))?;
    let r = evaluate_dataset(&davis, root.join("Annotations/480p"), BOUND_TH)?;
    assert_eq!(r.summary.objects, 3);
    let s = r.summary;
    for v in [s.jf_mean, s.j_mean, s.j_recall, s.f_mean, s.f_recall] {
        assert_eq!(v, 1.0);
    }
    assert_eq!((s.j_decay, s.f_decay), (0.0, 0.0));
    // every frame but the first and the last is scored
    let blackswan = &r.sequences[0];
    assert_eq!(blackswan.frames.len(), davis.sequences[0].len() - 2);
    assert_eq!(blackswan.frames[0], "00001");
    Ok(())
}
