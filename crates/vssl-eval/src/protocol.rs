//! Label-propagation protocols: every knob of the reference evaluation scripts, with presets that
//! reproduce them (see `../shared/reference/contrastcorr.md` §5 for the sources).
//!
//! | | ContrastCorr | UVC | CRW |
//! |---|---|---|---|
//! | input | short side 560, long side floored to a multiple of 64; 8-bit Lab | short side 480 (same rule); Lab | the frames as they are (480p); RGB |
//! | encoder | ResNet-18, strides 1, 2, 1, 1 (512 ch at stride 8) | the same | `layer4` removed, `layer3` at stride 1 (256 ch at stride 8) |
//! | features | raw | raw | L2-normalised |
//! | affinity | global per context frame, mutual matching, softmax over the context (temperature 1), top-5 kept, no renormalisation | the same without mutual matching | top-10 jointly over all context frames, softmax (temperature 0.05) over the kept |
//! | context | first frame + 7 previous, predictions averaged | the same | first frame + 20 previous, the video front-padded with copies of frame 0; radius 12 around each node except in the first frame |
//! | encoder input | Lab | L channel ×3 | RGB |
//! | padding | zeros | zeros | reflect in every padded convolution (`--model-type scratch`) |
//! | first-frame labels | one-hot, PIL-nearest to the feature grid | the same | one-hot, bilinear (OpenCV, float) to `⌈H/8⌉ × ⌈W/8⌉` |
//! | output | ×8 bilinear to the working size, per-channel min-max, argmax, PIL-nearest to the frame size; frame 0 = the given map | the same | bilinear (OpenCV, float) straight to the frame size, argmax; frame 0 = the first-frame labels decided the same way |
//!
//! The transcription `tests/golden/propagate.py` documents every rule with its source file, and
//! `crates/vssl-eval/tests/propagation_fidelity.rs` checks the presets against it.

use serde::{Deserialize, Serialize};
use vssl_core::{Error, Result};
pub use vssl_model::PaddingMode;

/// How frames are sized for the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum SizeRule {
    /// The frames as decoded.
    Native,
    /// Scaled so the short side is `side` and the long side `⌊side·long/short / multiple⌋ ·
    /// multiple` (ContrastCorr's `test.py`: 560 and 64, so 854×480 → 960×560), bilinear.
    ShortSide {
        /// The short side, in pixels.
        side: usize,
        /// The long side is floored to a multiple of this.
        multiple: usize,
    },
}

impl SizeRule {
    /// The working `(width, height)` of a `width × height` frame.
    pub fn apply(&self, width: usize, height: usize) -> Result<(usize, usize)> {
        match *self {
            SizeRule::Native => Ok((width, height)),
            SizeRule::ShortSide { side, multiple } => {
                let multiple = multiple.max(1);
                let (short, long) = (width.min(height), width.max(height));
                if short == 0 || side == 0 {
                    return Err(Error::op(
                        "SizeRule",
                        format!("cannot size a {width}x{height} frame to a short side of {side}"),
                    ));
                }
                let scaled = (side as f64 * long as f64 / short as f64 / multiple as f64).floor()
                    as usize
                    * multiple;
                let scaled = scaled.max(multiple);
                Ok(if height <= width {
                    (scaled, side)
                } else {
                    (side, scaled)
                })
            }
        }
    }
}

/// What the encoder sees of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColourInput {
    /// 8-bit Lab (OpenCV), `x = (lab − 128)/128`, then `((x + 1)/2 − mean)/std` with ImageNet's
    /// statistics (ContrastCorr, UVC).
    Lab,
    /// RGB / 255 normalised with ImageNet's mean and std (CRW).
    Rgb,
    /// The lightness of [`ColourInput::Lab`] alone: `x_L = (L − 128)/128` repeated on three
    /// channels, then `((x + 1)/2 − mean_c)/std_c` per channel `c` with ImageNet's statistics (UVC's
    /// `test.py`, github.com/Liusifei/UVC: its `forward` feeds `frame[:, 0:1].repeat(1, 3, 1, 1)`).
    LabLightness,
}

/// How the first frame's label map becomes labels on the feature grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelDownsample {
    /// The map resized with PIL's nearest rule, then one-hot (ContrastCorr's and UVC's
    /// `read_seg`: `scipy.misc.imresize(.., 'nearest', mode='F')` to `(W/8, H/8)` of the working
    /// size). The reference's one-hot has `max id + 1` channels (256 for DAVIS-2016's ids
    /// {0, 255}); vssl keeps one channel per id of the map (background first). The reference's
    /// other channels stay zero all along and never win its argmax (the first maximum wins and
    /// the labels are non-negative), so the masks are the same (checked against the reference
    /// by `tests/propagation_fidelity.rs`) at a fraction of the cost.
    Nearest,
    /// The one-hot map (`f32`) resized bilinearly as OpenCV's `cv2.resize(.., INTER_LINEAR)`
    /// does on float images (pixel centres aligned, no antialiasing) to the feature grid
    /// (CRW's `data/vos.py`: to `⌈W/8⌉ × ⌈H/8⌉` of the frame).
    Bilinear,
}

/// How soft labels on the feature grid become a label map of the frame's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputRule {
    /// Bilinear (`align_corners = false`) to the working size, `norm_mask` when asked, argmax
    /// (the first maximum wins), then PIL's nearest rule to the frame size (ContrastCorr, UVC:
    /// `F.interpolate(scale_factor=8)` and `imresize(.., 'nearest')`).
    WorkThenNearest,
    /// Bilinear straight to the frame size (OpenCV's float `INTER_LINEAR`, the same geometry),
    /// `norm_mask` when asked, argmax (CRW's `dump_predictions`).
    Bilinear,
}

/// What is reported as frame 0's label map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirstFrameOutput {
    /// The given map itself (ContrastCorr, UVC copy the annotation).
    Given,
    /// The first-frame labels on the feature grid decided by the [`OutputRule`] like every
    /// other frame (CRW writes its prediction for frame 0 too).
    Decided,
}

/// How the context frames vote.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum Affinity {
    /// Every context frame propagates on its own (all its nodes, `propagate_global`) and the
    /// predictions are averaged with equal weights (ContrastCorr, UVC).
    PerFrame {
        /// NCNet-style mutual matching before the softmax.
        mutual_matching: bool,
        /// Multiplier of the affinity inside the softmax over context nodes.
        temperature: f64,
        /// Weights kept per target node (ties kept), not renormalised.
        topk: usize,
    },
    /// The top `topk` affinities jointly over all context frames, softmax of `affinity /
    /// temperature` over them (CRW).
    Joint {
        /// Divides the affinity inside the softmax (CRW: 0.05).
        temperature: f64,
        /// Candidates kept per target node.
        topk: usize,
        /// Euclidean radius (feature cells) around each target node on the previous frames;
        /// `None` = every node.
        radius: Option<usize>,
        /// The same for the first frame.
        first_frame_radius: Option<usize>,
    },
}

/// Every knob of a propagation run; `Default` is ContrastCorr's `test.py`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Protocol {
    /// Frame size for the encoder.
    pub size: SizeRule,
    /// Colour input of the encoder.
    pub colour: ColourInput,
    /// Stage strides of the ResNet encoder (its length = stages kept): `[1, 2, 1, 1]`
    /// ContrastCorr/UVC, `[1, 2, 1]` CRW. Weights trained elsewhere are evaluated with these.
    pub strides: Vec<usize>,
    /// L2-normalise every feature vector (CRW).
    pub l2_normalize: bool,
    /// How the context votes.
    pub affinity: Affinity,
    /// Previous frames kept as context (besides the first frame).
    pub previous: usize,
    /// Start the context filled with `previous` copies of frame 0 (CRW pads the video so).
    pub pad_with_first: bool,
    /// Min-max normalise every label channel whose maximum is positive before the argmax
    /// (ContrastCorr's `norm_mask`).
    pub norm_mask: bool,
    /// Padding of the encoder's convolutions (CRW: reflect).
    pub padding: PaddingMode,
    /// How the first frame's map is put on the feature grid.
    pub label_downsample: LabelDownsample,
    /// How soft labels become a map at the frame's size.
    pub output: OutputRule,
    /// What frame 0's map is.
    pub first_frame: FirstFrameOutput,
}

impl Default for Protocol {
    fn default() -> Self {
        Self::contrastcorr()
    }
}

/// The protocol presets by name.
pub const PRESETS: &[&str] = &["contrastcorr", "uvc", "crw"];

impl Protocol {
    /// ContrastCorr's `test.py` (`-s 560`, `--pre_num 7`, top-5).
    pub fn contrastcorr() -> Self {
        Self {
            size: SizeRule::ShortSide {
                side: 560,
                multiple: 64,
            },
            colour: ColourInput::Lab,
            strides: vec![1, 2, 1, 1],
            l2_normalize: false,
            affinity: Affinity::PerFrame {
                mutual_matching: true,
                temperature: 1.0,
                topk: 5,
            },
            previous: 7,
            pad_with_first: false,
            norm_mask: true,
            padding: PaddingMode::Zeros,
            label_downsample: LabelDownsample::Nearest,
            output: OutputRule::WorkThenNearest,
            first_frame: FirstFrameOutput::Given,
        }
    }

    /// UVC's `test.py`: ContrastCorr's protocol without mutual matching, at 480p, the encoder
    /// fed the lightness alone.
    pub fn uvc() -> Self {
        Self {
            size: SizeRule::ShortSide {
                side: 480,
                multiple: 64,
            },
            colour: ColourInput::LabLightness,
            affinity: Affinity::PerFrame {
                mutual_matching: false,
                temperature: 1.0,
                topk: 5,
            },
            ..Self::contrastcorr()
        }
    }

    /// CRW's `test.py` (`--cropSize -1 --topk 10 --radius 12 --temperature 0.05 --videoLen 20`).
    pub fn crw() -> Self {
        Self {
            size: SizeRule::Native,
            colour: ColourInput::Rgb,
            strides: vec![1, 2, 1],
            l2_normalize: true,
            affinity: Affinity::Joint {
                temperature: 0.05,
                topk: 10,
                radius: Some(12),
                first_frame_radius: None,
            },
            previous: 20,
            pad_with_first: true,
            norm_mask: false,
            padding: PaddingMode::Reflect,
            label_downsample: LabelDownsample::Bilinear,
            output: OutputRule::Bilinear,
            first_frame: FirstFrameOutput::Decided,
        }
    }

    /// The preset called `name` (one of [`PRESETS`]).
    ///
    /// # Errors
    /// [`Error::Op`] listing the presets when `name` is not one.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "contrastcorr" => Ok(Self::contrastcorr()),
            "uvc" => Ok(Self::uvc()),
            "crw" => Ok(Self::crw()),
            other => Err(Error::op(
                "Protocol",
                format!("unknown protocol {other:?}; the presets are {PRESETS:?}"),
            )),
        }
    }

    /// Checks the knobs.
    ///
    /// # Errors
    /// [`Error::Op`] (`Protocol`) naming the knob that is out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::op("Protocol", m));
        if self.strides.is_empty() || self.strides.len() > 4 || self.strides.contains(&0) {
            return bad(format!(
                "strides must list 1 to 4 positive stage strides, got {:?}",
                self.strides
            ));
        }
        match self.affinity {
            Affinity::PerFrame {
                temperature, topk, ..
            }
            | Affinity::Joint {
                temperature, topk, ..
            } => {
                if topk == 0 {
                    return bad("topk must be at least 1".into());
                }
                if !(temperature.is_finite() && temperature > 0.0) {
                    return bad(format!("temperature must be positive, got {temperature}"));
                }
            }
        }
        if let SizeRule::ShortSide { side: 0, .. } = self.size {
            return bad("the short side must be positive".into());
        }
        Ok(())
    }
}
