//! PCK (BADJA and JHMDB conventions) on hand-made points and mIoU on a hand-made confusion,
//! values worked out in the comments.

mod common;

use vssl_eval::Result;
use vssl_eval::metrics::miou::Confusion;
use vssl_eval::metrics::pck::{PckConvention, PckVideo, pck};

use common::labels;

fn close(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-12,
        "{what}: got {got}, want {want}"
    );
}

#[test]
fn pck_badja_pools_frames_and_joints() -> Result<()> {
    // 3 frames, 2 joints; frame 0 is the seed (its wrong prediction is not counted)
    let gt = vec![
        vec![(10.0, 10.0), (20.0, 20.0)],
        vec![(10.0, 10.0), (20.0, 20.0)],
        vec![(10.0, 10.0), (20.0, 20.0)],
    ];
    let pred = vec![
        vec![(99.0, 99.0), (99.0, 99.0)],
        vec![(13.0, 14.0), (20.0, 26.0)], // distances 5 and 6
        vec![(10.0, 10.0), (0.0, 0.0)],   // joint 1 invisible here
    ];
    let visible = vec![vec![true, true], vec![true, true], vec![true, false]];
    // areas 2500 and 900: thresholds α·50 and α·30
    let areas = [1.0, 2500.0, 900.0];
    let video = PckVideo {
        pred: &pred,
        gt: &gt,
        visible: &visible,
        mask_areas: Some(&areas),
    };
    // α = 0.1: frame 1 threshold 5 → joint 0 (d 5) correct, joint 1 (d 6) not; frame 2 joint 0
    // correct (d 0), joint 1 skipped → 2 of 3
    let r = pck(&[video], 0.1, PckConvention::Badja)?;
    assert_eq!((r.correct, r.evaluated), (2, 3));
    close("BADJA pck", r.pck, 2.0 / 3.0);
    close("BADJA joint 0", r.per_joint[0], 1.0);
    close("BADJA joint 1", r.per_joint[1], 0.0);
    // α = 0.2: threshold 10 → all 3 correct
    close(
        "BADJA α 0.2",
        pck(&[video], 0.2, PckConvention::Badja)?.pck,
        1.0,
    );
    // BADJA needs the areas
    let no_area = PckVideo {
        mask_areas: None,
        ..video
    };
    assert!(pck(&[no_area], 0.1, PckConvention::Badja).is_err());
    Ok(())
}

#[test]
fn pck_jhmdb_averages_per_joint() -> Result<()> {
    // frame 1: visible joints span a 30x40 box (diagonal 50) → tolerance α·0.6·50 = 30α
    let gt = vec![
        vec![(0.0, 0.0), (30.0, 40.0), (10.0, 10.0)],
        vec![(0.0, 0.0), (30.0, 40.0), (10.0, 10.0)],
        vec![(0.0, 0.0), (30.0, 40.0), (500.0, 500.0)],
    ];
    let pred = vec![
        vec![(0.0, 0.0), (30.0, 40.0), (10.0, 10.0)],
        vec![(3.0, 0.0), (30.0, 44.0), (10.0, 10.0)], // d = 3, 4, 0
        vec![(0.0, 0.0), (30.0, 46.0), (0.0, 0.0)],   // d = 0, 6; joint 2 invisible
    ];
    let visible = vec![
        vec![true, true, true],
        vec![true, true, true],
        vec![true, true, false],
    ];
    let video = PckVideo {
        pred: &pred,
        gt: &gt,
        visible: &visible,
        mask_areas: None,
    };
    // α = 0.1 → tolerance 3 (the invisible joint's far position does not widen frame 2's box)
    // joint 0: d 3 ✓, d 0 ✓ → 1; joint 1: d 4 ✗, d 6 ✗ → 0; joint 2: d 0 ✓ → 1
    let r = pck(&[video], 0.1, PckConvention::Jhmdb)?;
    assert_eq!(r.per_joint, [1.0, 0.0, 1.0]);
    close("JHMDB pck", r.pck, 2.0 / 3.0); // mean of per-joint, not 3/5 pooled
    assert_eq!((r.correct, r.evaluated), (3, 5));
    // α = 0.2 → tolerance 6: joint 1 both ✓
    close(
        "JHMDB α 0.2",
        pck(&[video], 0.2, PckConvention::Jhmdb)?.pck,
        1.0,
    );
    // mismatched lengths are an error
    let short = PckVideo {
        pred: &pred[..2],
        ..video
    };
    assert!(pck(&[short], 0.1, PckConvention::Jhmdb).is_err());
    // nothing evaluated: NaN
    let one = PckVideo {
        pred: &pred[..1],
        gt: &gt[..1],
        visible: &visible[..1],
        mask_areas: None,
    };
    assert!(pck(&[one], 0.1, PckConvention::Jhmdb)?.pck.is_nan());
    Ok(())
}

#[test]
fn miou_from_a_hand_made_confusion() -> Result<()> {
    // 4 classes; class 3 never appears in GT or prediction
    let gt = labels(&[&[0, 0, 1, 1], &[0, 2, 2, 255]]);
    let pred = labels(&[&[0, 1, 1, 1], &[0, 2, 0, 3]]);
    let mut c = Confusion::new(4)?;
    c.add(&gt, &pred)?;
    // the 255 GT pixel is not counted, so its prediction 3 is not either
    assert_eq!(c.get(0, 0), 2);
    assert_eq!(c.get(0, 1), 1);
    assert_eq!(c.get(1, 1), 2);
    assert_eq!(c.get(2, 2), 1);
    assert_eq!(c.get(2, 0), 1);
    let s = c.scores();
    // class 0: 2 / (3 + 3 − 2) = 1/2; class 1: 2 / (2 + 3 − 2) = 2/3; class 2: 1 / (2 + 1 − 1)
    // = 1/2; class 3: absent → excluded
    close("IoU 0", s.iou[0].expect("class 0"), 0.5);
    close("IoU 1", s.iou[1].expect("class 1"), 2.0 / 3.0);
    close("IoU 2", s.iou[2].expect("class 2"), 0.5);
    assert_eq!(s.iou[3], None);
    close("mIoU", s.miou, (0.5 + 2.0 / 3.0 + 0.5) / 3.0);
    close("pixel accuracy", s.pixel_accuracy, 5.0 / 7.0);
    close(
        "mean accuracy",
        s.mean_accuracy,
        (2.0 / 3.0 + 1.0 + 0.5) / 3.0,
    );
    // accumulating over frames is one matrix: a second frame adds its counts
    let mut two = c.clone();
    two.merge(&c)?;
    assert_eq!(two.get(0, 0), 4);
    close("mIoU of twice the same", two.miou(), s.miou);
    // a class predicted but absent from the GT has IoU 0 and counts
    let mut d = Confusion::new(2)?;
    d.add_labels(&[0, 0], &[0, 1])?;
    close(
        "false-positive class",
        d.scores().iou[1].expect("class 1"),
        0.0,
    );
    close("mIoU with it", d.miou(), 0.25);
    // predictions outside the classes and size mismatches are errors
    assert!(d.add_labels(&[0], &[5]).is_err());
    assert!(d.add(&labels(&[&[0]]), &labels(&[&[0, 0]])).is_err());
    assert!(Confusion::new(0).is_err());
    Ok(())
}
