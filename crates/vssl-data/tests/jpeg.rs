//! JPEG frames decode to exactly the pixels of PIL and OpenCV (libjpeg-turbo), the decoders of the
//! reference PyTorch pipelines (golden file `tests/golden/jpeg.py`); broken files are errors that
//! name them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on failure

use vssl_core::testing::{Golden, golden_dir};
use vssl_data::source::folder::decode_image;

#[test]
fn jpegs_decode_like_libjpeg_turbo() {
    let g = Golden::load(golden_dir().join("jpeg/decoded.safetensors")).expect("run jpeg.py");
    for name in ["420", "444", "gray"] {
        let want = g.get(name).unwrap();
        let (h, w, _) = want.dims3().unwrap();
        let want = want.flatten_all().unwrap().to_vec1::<u8>().unwrap();
        let got = decode_image(&golden_dir().join(format!("jpeg/{name}.jpg")), None).unwrap();
        assert_eq!(got.dimensions(), (w as u32, h as u32), "{name}");
        let differ = got
            .as_raw()
            .iter()
            .zip(&want)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            differ, 0,
            "{name}: {differ} bytes differ from PIL's decoding"
        );
    }
}

#[test]
fn broken_jpegs_are_errors_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("vssl-jpeg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read(golden_dir().join("jpeg/420.jpg")).unwrap();
    // A JPEG header followed by garbage, and an empty file.
    let mut garbage = good[..4].to_vec();
    garbage.extend(std::iter::repeat_n(0x5Au8, 300));
    for (name, bytes) in [("garbage.jpg", garbage), ("empty.jpg", Vec::new())] {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        let err = decode_image(&p, None).unwrap_err().to_string();
        assert!(err.contains(name), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
