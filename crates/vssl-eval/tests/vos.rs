//! The DAVIS-layout runner: frame picks, drawing, grids, and whole sequences written to disk.

use std::path::PathBuf;

use candle_core::Device;
use image::{Rgb, RgbImage};
use vssl_data::dataset::Davis;
use vssl_data::dataset::davis::{davis_palette, read_mask};
use vssl_data::frame::LabelMap;
use vssl_data::synth::{Preset, Split, write_dataset};
use vssl_eval::encoder::Encoder;
use vssl_eval::protocol::Protocol;
use vssl_eval::vos::{
    Method, OverlayOptions, draw_mask, grid, mask_path, overlay_indices, propagate_sequence,
};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vssl-vos-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("a scratch folder");
    d
}

/// A small synthetic DAVIS-2017-layout dataset: 2 clips of 12 frames at 96×64.
fn dataset(name: &str) -> (PathBuf, Davis) {
    let root = scratch(name);
    let mut cfg = Preset::Easy.config();
    cfg.width = 96;
    cfg.height = 64;
    cfg.frames = 12;
    write_dataset(&cfg, Split::Eval, 3, 2, &root).expect("the synthetic clips");
    let davis = Davis::open(&root, 2017, "480p", None).expect("the synthetic dataset");
    assert_eq!(davis.sequences.len(), 2);
    (root, davis)
}

#[test]
fn overlay_frames_are_spread_over_the_video() {
    let v = overlay_indices(50, 12);
    assert_eq!(v.len(), 12);
    assert_eq!((v[0], v[11]), (0, 49));
    assert!(v.windows(2).all(|p| p[0] < p[1]), "{v:?}");
    assert_eq!(overlay_indices(5, 12), vec![0, 1, 2, 3, 4]);
    assert_eq!(overlay_indices(7, 1), vec![0]);
    assert!(overlay_indices(0, 4).is_empty());
    assert_eq!(overlay_indices(3, 2), vec![0, 2]);
}

#[test]
fn masks_are_drawn_blended_with_bright_boundaries() {
    let frame = RgbImage::from_pixel(4, 4, Rgb([100, 100, 100]));
    let mut mask = LabelMap::new(4, 4);
    for (x, y) in [(1, 1), (2, 1), (1, 2), (2, 2)] {
        mask.put_pixel(x, y, image::Luma([1]));
    }
    let out = draw_mask(&frame, &mask).unwrap();
    let red = davis_palette()[1]; // (128, 0, 0)
    // Inside, away from a change: half frame, half colour.
    assert_eq!(
        out.get_pixel(1, 1).0,
        [
            ((100 + u16::from(red[0])) / 2) as u8,
            ((100 + u16::from(red[1])) / 2) as u8,
            ((100 + u16::from(red[2])) / 2) as u8
        ]
    );
    // The object's right and lower edges, and the background pixel left of it: full colour.
    assert_eq!(out.get_pixel(2, 2).0, [255, 0, 0]);
    assert_eq!(out.get_pixel(0, 1).0, [255, 0, 0]);
    // Background far from the object: untouched.
    assert_eq!(out.get_pixel(3, 3).0, [100, 100, 100]);
    assert!(draw_mask(&frame, &LabelMap::new(3, 4)).is_err());
}

#[test]
fn grids_lay_tiles_out_in_rows() {
    let tiles: Vec<RgbImage> = (0..3u8)
        .map(|i| RgbImage::from_pixel(10, 6, Rgb([i * 50, 0, 0])))
        .collect();
    let g = grid(&tiles, 2).unwrap();
    assert_eq!(g.dimensions(), (2 * 10 + 3 * 4, 2 * 6 + 3 * 4));
    assert_eq!(g.get_pixel(4, 4).0, [0, 0, 0]);
    assert_eq!(g.get_pixel(4 + 10 + 4, 4).0, [50, 0, 0]);
    assert_eq!(g.get_pixel(4, 4 + 6 + 4).0, [100, 0, 0]);
    // The empty cell of the second row stays white.
    assert_eq!(g.get_pixel(4 + 10 + 4, 4 + 6 + 4).0, [255, 255, 255]);
    assert!(grid(&[], 2).is_err());
}

#[test]
fn copy_first_writes_the_first_mask_for_every_frame() {
    let (root, davis) = dataset("copy");
    let out = root.join("out");
    let seq = &davis.sequences[0];
    let overlay = root.join("overlay.png");
    let opts = OverlayOptions {
        frames: 5,
        columns: 3,
        width: 48,
    };
    let r = propagate_sequence(
        seq,
        &Method::CopyFirst,
        &Protocol::contrastcorr(),
        &Device::Cpu,
        &out,
        Some((&overlay, opts)),
    )
    .unwrap();
    assert_eq!(r.frames, 12);
    let first = read_mask(seq.annotations[0].as_ref().unwrap()).unwrap();
    for t in 0..seq.len() {
        let p = mask_path(&out, seq, t);
        assert_eq!(read_mask(&p).unwrap(), first, "{}", p.display());
    }
    // 5 tiles of 48x32 in rows of 3.
    let img = image::open(&overlay).unwrap();
    assert_eq!(
        (img.width(), img.height()),
        (3 * 48 + 4 * 4, 2 * 32 + 3 * 4)
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn propagation_writes_every_frame_with_the_first_frames_ids() {
    let (root, davis) = dataset("prop");
    let out = root.join("out");
    let seq = &davis.sequences[1];
    let mut protocol = Protocol::crw();
    protocol.previous = 3;
    let method = Method::Propagate(Encoder::LabPatches);
    propagate_sequence(seq, &method, &protocol, &Device::Cpu, &out, None).unwrap();
    let first = read_mask(seq.annotations[0].as_ref().unwrap()).unwrap();
    let mut ids: Vec<u8> = first.as_raw().to_vec();
    ids.sort_unstable();
    ids.dedup();
    // Per object, IoU with the ground truth pooled over the frames after the first.
    let objects: Vec<u8> = ids.iter().copied().filter(|&i| i != 0).collect();
    assert!(!objects.is_empty());
    let (mut inter, mut union) = (vec![0usize; objects.len()], vec![0usize; objects.len()]);
    for t in 0..seq.len() {
        let m = read_mask(mask_path(&out, seq, t)).unwrap();
        assert_eq!(m.dimensions(), first.dimensions());
        assert!(
            m.as_raw().iter().all(|v| ids.contains(v)),
            "frame {t} has ids outside {ids:?}"
        );
        if t == 0 {
            // CRW decides frame 0 through its own pipeline (bilinear down and up), so only
            // the boundary may move.
            let same = m
                .as_raw()
                .iter()
                .zip(first.as_raw())
                .filter(|(a, b)| a == b)
                .count();
            assert!(
                same * 100 >= 95 * m.as_raw().len(),
                "frame 0: {same} pixels kept"
            );
            continue;
        }
        let gt = read_mask(seq.annotations[t].as_ref().unwrap()).unwrap();
        for (i, &id) in objects.iter().enumerate() {
            for (&a, &b) in m.as_raw().iter().zip(gt.as_raw()) {
                inter[i] += usize::from(a == id && b == id);
                union[i] += usize::from(a == id || b == id);
            }
        }
    }
    // Raw Lab patches on slow, clean clips follow the objects (a propagation that scrambles
    // labels, loses the objects or spreads them falls far below).
    for (i, &id) in objects.iter().enumerate() {
        let iou = inter[i] as f64 / union[i].max(1) as f64;
        eprintln!("object {id}: IoU {iou:.3}");
        assert!(iou > 0.65, "object {id}: IoU {iou}");
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_sequence_without_a_first_annotation_is_an_error_naming_it() {
    let (root, davis) = dataset("noann");
    let mut seq = davis.sequences[0].clone();
    let missing = root.join("nowhere/00000.png");
    seq.annotations[0] = Some(missing.clone());
    let err = propagate_sequence(
        &seq,
        &Method::CopyFirst,
        &Protocol::contrastcorr(),
        &Device::Cpu,
        &root.join("out"),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("nowhere"), "{err}");
    seq.annotations[0] = None;
    let err = propagate_sequence(
        &seq,
        &Method::CopyFirst,
        &Protocol::contrastcorr(),
        &Device::Cpu,
        &root.join("out"),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no annotation"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}
