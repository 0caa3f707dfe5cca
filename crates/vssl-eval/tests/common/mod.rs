//! Helpers shared by the vssl-eval tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use vssl_data::frame::LabelMap;

/// A fresh temp folder, removed on drop.
pub struct Tmp(pub PathBuf);

impl Tmp {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "vssl-eval-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp folder");
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A label map from rows of ids.
pub fn labels(rows: &[&[u8]]) -> LabelMap {
    let (h, w) = (rows.len() as u32, rows[0].len() as u32);
    LabelMap::from_raw(w, h, rows.concat()).expect("rows of equal length")
}

/// Writes a DAVIS tree at `root` (empty JPEG placeholders, GT as palette PNGs, or as mode-L
/// {0, 255} PNGs when `gray` is set) and predictions as palette PNGs under `pred_root`.
pub fn write_davis(
    root: &Path,
    pred_root: &Path,
    seqs: &[(String, Vec<LabelMap>, Vec<LabelMap>)],
    gray: bool,
) {
    for (name, gt, pred) in seqs {
        let frames = root.join("JPEGImages/480p").join(name);
        std::fs::create_dir_all(&frames).expect("mkdir");
        for (t, (g, p)) in gt.iter().zip(pred).enumerate() {
            std::fs::write(frames.join(format!("{t:05}.jpg")), b"").expect("write jpg");
            let a = root
                .join("Annotations/480p")
                .join(name)
                .join(format!("{t:05}.png"));
            if gray {
                std::fs::create_dir_all(a.parent().expect("parent")).expect("mkdir");
                let mut l = g.clone();
                for v in l.iter_mut() {
                    *v = if *v > 0 { 255 } else { 0 };
                }
                l.save(&a).expect("write L png");
            } else {
                vssl_data::dataset::write_palette_mask(&a, g).expect("write gt");
            }
            let pp = pred_root.join(name).join(format!("{t:05}.png"));
            vssl_data::dataset::write_palette_mask(&pp, p).expect("write pred");
        }
    }
}
