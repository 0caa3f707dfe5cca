//! One ContrastCorr training step (Wang, Zhou and Li, "Contrastive Transformation for
//! Self-supervised Correspondence Learning", AAAI 2021), read top to bottom.
//!
//! This is the official code's `model.py: track_match_comb.forward`, `train_trackingnet.py:
//! forward` and the loss assembly of `train_iter`, with the same semantics (raw dot-product
//! affinities, softmax over reference positions for copying and over target positions for
//! localisation, PyTorch 1.1's `align_corners = true` geometry by default). Two phases:
//!
//! - **warm-up**: reference and target are two crops of the same size (256² in the paper); the
//!   target's colours are reconstructed from the reference's through the affinity;
//! - **main**: the reference is a patch (256²) and the target a whole frame (640²); the patch is
//!   first *tracked* into the target (soft-argmax centre, a fixed-size box, a differentiable
//!   crop), then everything of the warm-up happens between the patch and the crop, plus the
//!   inter-video transformation over every reference pixel of the batch.
//!
//! Colours are reconstructed either through the frozen Lab autoencoder of UVC (the paper; features
//! are copied in its 256-d space at stride 8 and decoded to full resolution) or directly in
//! down-sampled Lab space (Lab averaged over the encoder's stride, decoding is the identity; the
//! default when no autoencoder weights are given). [`ColourSpace::name`] says which, for the run's
//! records.
//!
//! Term toggles turn the one step into three methods ([`Method`]): colourisation (intra-video
//! copying only), UVC (+ colour switch, concentration and tracking) and ContrastCorr (+ self
//! reconstruction and the inter-video terms).
//!
//! Differences from the reference, all deliberate: a batch of one keeps its batch dimension (the
//! reference squeezes it away and fails); the patch-box size is the reference patch's feature size
//! (the reference passes it separately, always equal); channel dropout is decided by the data
//! pipeline ([`vssl_data::augment::channel_dropout`]) and passed in, not drawn from a global RNG.

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use vssl_core::ops::attention::batched_attention;
use vssl_core::ops::grid::{affine_grid, grid_sample};
use vssl_core::ops::softmax::softmax;
use vssl_core::{Error, Result};
use vssl_data::augment::encoder_input;
use vssl_loss::Terms;
use vssl_loss::affinity::{affinity, copy, copy_weights, masked_self_affinity, transpose};
use vssl_loss::colour::{LabWeights, reconstruction_l1};
use vssl_loss::concentration::{Concentration, concentration_switch};
use vssl_loss::inter::inter_video;
use vssl_model::{Autoencoder, ResNet};

const OP: &str = "contrastcorr_step";

/// Which phase of training a step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Two equal-size crops (epochs 0–99 in the paper).
    Warmup,
    /// A reference patch tracked into the whole target frame (epochs 100–199).
    Main,
}

/// The method a step trains: which terms are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Colourisation (Vondrick et al. 2018 style): intra-video copying only; warm-up phase only.
    Colorization,
    /// UVC (Li et al. 2019): intra-video copying, colour switch, concentration, tracking.
    Uvc,
    /// ContrastCorr: UVC's terms plus self reconstruction and the inter-video terms.
    Contrastcorr,
}

/// Which terms a step computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermToggles {
    /// Copy the target's colours back to the reference through the transposed weights.
    pub color_switch: bool,
    /// Reconstruct the reference from itself, its own pixel masked out.
    pub self_reconstruction: bool,
    /// UVC's concentration regulariser (also gated per step by [`StepOptions::concentration`]).
    pub concentration: bool,
    /// Patch tracking: required by the main phase.
    pub tracking: bool,
    /// The inter-video consistency and sparsity terms (main phase).
    pub inter_video: bool,
}

impl Method {
    /// The terms the method uses.
    pub fn toggles(self) -> TermToggles {
        match self {
            Method::Colorization => TermToggles {
                color_switch: false,
                self_reconstruction: false,
                concentration: false,
                tracking: false,
                inter_video: false,
            },
            Method::Uvc => TermToggles {
                color_switch: true,
                self_reconstruction: false,
                concentration: true,
                tracking: true,
                inter_video: false,
            },
            Method::Contrastcorr => TermToggles {
                color_switch: true,
                self_reconstruction: true,
                concentration: true,
                tracking: true,
                inter_video: true,
            },
        }
    }
}

/// Settings of the step; `Default` is the paper's (the official code's) values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StepConfig {
    /// Which terms are on.
    pub method: Method,
    /// Temperature multiplier inside every softmax of the affinities (`--temp 1`). The
    /// self-reconstruction softmax has none, as in the reference.
    pub temp: f64,
    /// Channel weights of every L1 (1 : 10 : 10).
    pub lab_weights: LabWeights,
    /// Weight of the colour switch inside the intra-video L1 (hard-coded 0.1 in the reference).
    pub switch_weight: f64,
    /// Weight of the self-reconstruction L1 (1).
    pub self_rec_weight: f64,
    /// Weight of the concentration term (`--lc 0.3`).
    pub concentration_weight: f64,
    /// Concentration window side (`--lc_win 8`).
    pub concentration_window: usize,
    /// Concentration window stride (8: the reference uses the window side).
    pub concentration_stride: usize,
    /// Weight of the inter/intra consistency L1 (1).
    pub inter_weight: f64,
    /// Weight of the sparsity term (`--contrastive 1`).
    pub sparsity_weight: f64,
    /// Geometry of every sampling grid: `true` is PyTorch 1.1's behaviour, which the reference
    /// was written for; `false` is PyTorch ≥ 1.3's default (crops then equal slicing).
    pub align_corners: bool,
    /// Main phase with the autoencoder: encode only the window of the target frame that the
    /// colour crop reads (the box, one cell for the interpolation and a margin of
    /// [`COLOUR_WINDOW_MARGIN`] cells), not the whole frame. Exact: the encoder's features
    /// inside the window do not depend on what lies outside it. Turn it off only to compare.
    pub colour_window: bool,
}

/// Cells of margin around the colour crop's cells when only a window of the target is encoded.
/// A window edge changes the autoencoder's features (its reflection padding sees the window,
/// not the frame) up to 2 cells deep: 2 px after the first two 3×3 convolutions at full
/// resolution, 3 cells at 1/2 after the next two, 3 at 1/4 after the fifth, 2 at 1/8.
pub const COLOUR_WINDOW_MARGIN: usize = 3;

impl Default for StepConfig {
    fn default() -> Self {
        Self {
            method: Method::Contrastcorr,
            temp: 1.0,
            lab_weights: LabWeights::default(),
            switch_weight: 0.1,
            self_rec_weight: 1.0,
            concentration_weight: 0.3,
            concentration_window: 8,
            concentration_stride: 8,
            inter_weight: 1.0,
            sparsity_weight: 1.0,
            align_corners: true,
            colour_window: true,
        }
    }
}

/// What changes from step to step with the schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOptions {
    /// Per-sample outlier threshold of every L1 (`None` in epochs 0, 100 and 101, else 2.5).
    pub thr: Option<f64>,
    /// Whether the concentration term is on (from epoch 10 of the warm-up onwards).
    pub concentration: bool,
    /// BatchNorm in train mode (batch statistics, running statistics updated).
    pub train: bool,
}

impl Default for StepOptions {
    fn default() -> Self {
        Self {
            thr: Some(2.5),
            concentration: true,
            train: true,
        }
    }
}

/// Where colours are copied and compared.
#[derive(Debug, Clone)]
pub enum ColourSpace {
    /// Through the frozen Lab autoencoder (the paper).
    Autoencoder(Box<Autoencoder>),
    /// Lab averaged over the encoder's output stride; decoding is the identity.
    Lab,
    /// Every `s × s` Lab patch as one `3·s²`-d vector (space-to-depth, `s` the encoder's
    /// stride); decoding puts the pixels back (depth-to-space). A lossless stand-in for the
    /// autoencoder: colours are copied as whole patches and compared at full resolution, so
    /// matching must get the texture inside a cell right, not only its mean colour.
    LabPatches,
}

impl ColourSpace {
    /// `"autoencoder"`, `"lab"` or `"lab-patches"`, for the run's records.
    pub fn name(&self) -> &'static str {
        match self {
            ColourSpace::Autoencoder(_) => "autoencoder",
            ColourSpace::Lab => "lab",
            ColourSpace::LabPatches => "lab-patches",
        }
    }

    /// Whether colours are compared at full resolution (the target is the image itself).
    fn full_resolution(&self) -> bool {
        !matches!(self, ColourSpace::Lab)
    }

    /// Colour features of a normalised Lab image at the encoder's stride `s`.
    fn encode(&self, x: &Tensor, s: usize) -> Result<Tensor> {
        match self {
            ColourSpace::Autoencoder(ae) => ae.encoder.forward(x),
            ColourSpace::Lab => Ok(x.avg_pool2d(s)?),
            ColourSpace::LabPatches => space_to_depth(x, s),
        }
    }

    /// Back to a normalised Lab image (full resolution for the autoencoder and Lab patches,
    /// stride `s` for Lab).
    fn decode(&self, f: &Tensor) -> Result<Tensor> {
        match self {
            ColourSpace::Autoencoder(ae) => ae.decoder.forward(f),
            ColourSpace::Lab => Ok(f.clone()),
            ColourSpace::LabPatches => depth_to_space(f),
        }
    }

    /// The reconstruction target of a whole normalised Lab image.
    fn target(&self, x: &Tensor, s: usize) -> Result<Tensor> {
        if self.full_resolution() {
            Ok(x.clone())
        } else {
            Ok(x.avg_pool2d(s)?)
        }
    }
}

/// One batch of frame pairs, as normalised Lab `x = (lab − 128)/128`, `[B, 3, H, W]`.
#[derive(Debug, Clone)]
pub struct PairBatch {
    /// Reference frames (warm-up: 256² crops; main: 256² patches).
    pub reference: Tensor,
    /// Target frames (warm-up: 256² crops; main: whole 640² frames).
    pub target: Tensor,
    /// Channels zeroed in both encoder inputs by channel dropout (empty: none), from
    /// [`vssl_data::augment::channel_dropout`]'s draw.
    pub dropped_channels: Vec<usize>,
}

/// What a step computed.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// The named, weighted terms.
    pub terms: Terms,
    /// Their weighted sum, to call `backward` on.
    pub total: Tensor,
    /// Main phase: the tracked centre `[B, 2]` (x, y) in target feature cells.
    pub center: Option<Tensor>,
    /// Main phase: the box `[B, 4]` (left, right, top, bottom) in target feature cells.
    pub bbox: Option<Tensor>,
}

/// The ContrastCorr step: the correspondence encoder being trained and the colour space.
#[derive(Debug, Clone)]
pub struct ContrastCorrStep {
    encoder: ResNet,
    colour: ColourSpace,
    cfg: StepConfig,
}

impl ContrastCorrStep {
    /// A step over `encoder` (trainable) and `colour` (frozen).
    ///
    /// # Errors
    /// [`Error::Op`] when the autoencoder is used with an encoder whose output stride is not 8
    /// (its decoder up-samples by 8), or the temperature is not a positive number.
    pub fn new(encoder: ResNet, colour: ColourSpace, cfg: StepConfig) -> Result<Self> {
        if matches!(colour, ColourSpace::Autoencoder(_)) && encoder.output_stride() != 8 {
            return Err(Error::op(
                OP,
                format!(
                    "the Lab autoencoder works at stride 8 but the encoder's output stride is {}",
                    encoder.output_stride()
                ),
            ));
        }
        if !(cfg.temp.is_finite() && cfg.temp > 0.0) {
            return Err(Error::op(
                OP,
                format!("temp must be positive, got {}", cfg.temp),
            ));
        }
        Ok(Self {
            encoder,
            colour,
            cfg,
        })
    }

    /// The encoder being trained.
    pub fn encoder(&self) -> &ResNet {
        &self.encoder
    }

    /// Recomputes the encoder's BatchNorm running statistics from `batches` under the current
    /// weights ([`ResNet::recompute_bn_stats`]), fed as training feeds them: the references and
    /// the targets in separate calls, without channel dropout (evaluation drops none). Returns
    /// the number of encoder calls.
    ///
    /// # Errors
    /// An error of a batch or of the encoder.
    pub fn recompute_bn_stats<I>(&self, batches: I) -> Result<usize>
    where
        I: IntoIterator<Item = Result<PairBatch>>,
    {
        let inputs = batches.into_iter().flat_map(|b| match b {
            Ok(b) => vec![encoder_input(&b.reference), encoder_input(&b.target)],
            Err(e) => vec![Err(e)],
        });
        self.encoder.recompute_bn_stats(inputs)
    }

    /// The colour space.
    pub fn colour(&self) -> &ColourSpace {
        &self.colour
    }

    /// The configuration.
    pub fn config(&self) -> &StepConfig {
        &self.cfg
    }

    /// Runs one step's forward pass and returns its terms (call `backward` on `total`).
    ///
    /// # Errors
    /// [`Error::Op`] (`contrastcorr_step`) for an empty batch, mismatched batch sizes, images that
    /// are not `[B, 3, H, W]` with `H`, `W` multiples of the encoder's stride, warm-up crops of
    /// different sizes, a main-phase reference larger than the target, or the main phase with
    /// tracking off; errors of the ops otherwise.
    pub fn forward(
        &self,
        batch: &PairBatch,
        phase: Phase,
        opts: &StepOptions,
    ) -> Result<StepOutput> {
        let s = self.encoder.output_stride();
        let (b, h1, w1) = check_image(&batch.reference, "reference", s)?;
        let (b2, h2, w2) = check_image(&batch.target, "target", s)?;
        if b != b2 {
            return Err(Error::op(
                OP,
                format!("reference batch has {b} pairs but target batch has {b2}"),
            ));
        }
        match phase {
            Phase::Warmup if (h1, w1) != (h2, w2) => Err(Error::op(
                OP,
                format!("warm-up crops must have one size, got {h1}×{w1} and {h2}×{w2}"),
            )),
            Phase::Warmup => self.warmup(batch, opts),
            Phase::Main if !self.toggles().tracking => Err(Error::op(
                OP,
                format!(
                    "the main phase tracks a patch, but tracking is off for {:?}",
                    self.cfg.method
                ),
            )),
            Phase::Main if h1 > h2 || w1 > w2 => Err(Error::op(
                OP,
                format!("the reference patch {h1}×{w1} is larger than the target {h2}×{w2}"),
            )),
            Phase::Main => self.main(batch, opts),
        }
    }

    fn toggles(&self) -> TermToggles {
        self.cfg.method.toggles()
    }

    /// Encoder features of the reference and the target, in two calls (as the reference: BatchNorm
    /// statistics and running statistics are per call).
    fn features(&self, batch: &PairBatch, train: bool) -> Result<(Tensor, Tensor)> {
        let r = drop_channels(&encoder_input(&batch.reference)?, &batch.dropped_channels)?;
        let t = drop_channels(&encoder_input(&batch.target)?, &batch.dropped_channels)?;
        let f_ref = self.encoder.forward_t(&r, train)?; // [B, C, h, w]
        let f_tar = self.encoder.forward_t(&t, train)?; // [B, C, h', w']
        Ok((f_ref, f_tar))
    }

    fn concentration(&self) -> Concentration {
        Concentration {
            window: self.cfg.concentration_window,
            stride: self.cfg.concentration_stride,
            temp: self.cfg.temp,
            align_corners: self.cfg.align_corners,
        }
    }

    /// Warm-up: two crops of one size.
    fn warmup(&self, batch: &PairBatch, opts: &StepOptions) -> Result<StepOutput> {
        let cfg = &self.cfg;
        let on = self.toggles();
        let s = self.encoder.output_stride();
        let (x_ref, x_tar) = (&batch.reference, &batch.target);
        let (f_ref, f_tar) = self.features(batch, opts.train)?;
        let (_, _, h, w) = f_ref.dims4()?;
        let colour_ref = self.colour.encode(x_ref, s)?; // [B, Cc, h, w]

        // Intra-video transformation: the target's colours copied from the reference.
        let aff = affinity(&f_ref, &f_tar)?; // [B, N, N]
        let weights = copy_weights(&aff, cfg.temp)?; // [B, N_ref, N_tar], columns sum to 1
        let est_tar = self.colour.decode(&copy(&weights, &colour_ref, (h, w))?)?;
        let gt_tar = self.colour.target(x_tar, s)?;
        let gt_ref = self.colour.target(x_ref, s)?;

        // Colour switch: the reference's colours copied back from the target through the
        // transpose of the same (column-normalised) weights.
        let est_ref = if on.color_switch {
            let colour_tar = self.colour.encode(x_tar, s)?; // [B, Cc, h, w]
            Some(
                self.colour
                    .decode(&copy(&transpose(&weights)?, &colour_tar, (h, w))?)?,
            )
        } else {
            None
        };
        let mut terms = Terms::new();
        let switch = est_ref.as_ref().map(|e| (e, &gt_ref, cfg.switch_weight));
        terms.push(
            "intra",
            1.0,
            reconstruction_l1(&est_tar, &gt_tar, switch, cfg.lab_weights, opts.thr)?,
        )?;
        self.self_reconstruction(&mut terms, &f_ref, &colour_ref, &gt_ref, opts)?;
        if on.concentration && opts.concentration {
            terms.push(
                "concentration",
                cfg.concentration_weight,
                concentration_switch(&aff, (h, w), &self.concentration())?,
            )?;
        }
        let total = terms.total()?;
        Ok(StepOutput {
            terms,
            total,
            center: None,
            bbox: None,
        })
    }

    /// Self reconstruction: the reference from itself, no pixel copying itself.
    fn self_reconstruction(
        &self,
        terms: &mut Terms,
        f_ref: &Tensor,
        colour_ref: &Tensor,
        gt_ref: &Tensor,
        opts: &StepOptions,
    ) -> Result<()> {
        if !self.toggles().self_reconstruction {
            return Ok(());
        }
        let (_, _, h, w) = f_ref.dims4()?;
        let weights = softmax(&masked_self_affinity(f_ref)?, 1)?; // [B, N, N], no temperature
        let est = self.colour.decode(&copy(&weights, colour_ref, (h, w))?)?;
        terms.push(
            "self_rec",
            self.cfg.self_rec_weight,
            reconstruction_l1(&est, gt_ref, None, self.cfg.lab_weights, opts.thr)?,
        )
    }

    /// The crop of the target's colour features (`[B, Cc, H, W]` at the encoder's stride) at
    /// `bbox`: with the autoencoder and [`StepConfig::colour_window`], only a window of the
    /// target around the boxes is encoded (one size for the batch) and cropped with the same
    /// sampling positions.
    fn colour_crop(
        &self,
        x_tar: &Tensor,
        bbox: &Tensor,
        map: (usize, usize),
        out: (usize, usize),
    ) -> Result<Tensor> {
        let s = self.encoder.output_stride();
        let ac = self.cfg.align_corners;
        let window = match &self.colour {
            ColourSpace::Autoencoder(_) if self.cfg.colour_window => {
                Window::around(&bbox.to_vec2::<f32>()?, map, COLOUR_WINDOW_MARGIN)
            }
            _ => None,
        };
        let Some(win) = window else {
            return crop(&self.colour.encode(x_tar, s)?, bbox, 1.0, out, ac);
        };
        let pixels = win
            .origins
            .iter()
            .enumerate()
            .map(|(i, &(y0, x0))| -> Result<Tensor> {
                Ok(x_tar
                    .narrow(0, i, 1)?
                    .narrow(2, y0 * s, win.size.0 * s)?
                    .narrow(3, x0 * s, win.size.1 * s)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let colour = self.colour.encode(&Tensor::cat(&pixels, 0)?, s)?; // [B, Cc, wh, ww]
        crop_in(&colour, bbox, 1.0, out, ac, Some(&win))
    }

    /// Main phase: track the reference patch into the whole target frame, then reconstruct.
    fn main(&self, batch: &PairBatch, opts: &StepOptions) -> Result<StepOutput> {
        let cfg = &self.cfg;
        let on = self.toggles();
        let ac = cfg.align_corners;
        let s = self.encoder.output_stride();
        let (x_ref, x_tar) = (&batch.reference, &batch.target);
        let (f_ref, f_tar) = self.features(batch, opts.train)?; // [B, C, hp, wp], [B, C, H, W]
        let (b, _, hp, wp) = f_ref.dims4()?;
        let (_, _, ht, wt) = f_tar.dims4()?;
        let colour_ref = self.colour.encode(x_ref, s)?; // [B, Cc, hp, wp]

        // Localisation: every reference pixel's expected position in the target (softmax over
        // target positions of temp · F_refᵀ F_tar, [B, Np, Nt], never held at once on the CPU),
        // averaged into one centre per pair.
        let c = f_ref.dim(1)?;
        let q = f_ref.reshape((b, c, hp * wp))?.transpose(1, 2)?; // [B, Np, C] (a view)
        let k = f_tar.reshape((b, c, ht * wt))?.transpose(1, 2)?; // [B, Nt, C] (a view)
        let grid = cell_grid(ht, wt, ac, f_ref.device())?; // [Nt, 2]
        let coords = batched_attention(&q, &k, &grid, cfg.temp)?; // [B, Np, 2]
        let center = coords.mean(1)?; // [B, 2]
        let bbox = center_to_box(&center, (hp, wp), (ht, wt))?; // [B, 4]: l, r, t, b

        // Differentiable crops of the target's features, colour features and Lab image.
        let f_crop = crop(&f_tar, &bbox, 1.0, (hp, wp), ac)?; // [B, C, hp, wp]
        let colour_crop = self.colour_crop(x_tar, &bbox, (ht, wt), (hp, wp))?; // [B, Cc, hp, wp]
        let gt_crop = if self.colour.full_resolution() {
            crop(x_tar, &bbox, s as f64, (hp * s, wp * s), ac)?
        } else {
            colour_crop.clone()
        };
        let gt_ref = self.colour.target(x_ref, s)?;

        // Intra-video transformation between the patch and its crop.
        let aff = affinity(&f_ref, &f_crop)?; // [B, Np, Np]
        let weights = copy_weights(&aff, cfg.temp)?; // [B, Np, Np]
        let est_crop = self
            .colour
            .decode(&copy(&weights, &colour_ref, (hp, wp))?)?;
        let est_ref = if on.color_switch {
            Some(
                self.colour
                    .decode(&copy(&transpose(&weights)?, &colour_crop, (hp, wp))?)?,
            )
        } else {
            None
        };
        let mut terms = Terms::new();
        let switch = est_ref.as_ref().map(|e| (e, &gt_ref, cfg.switch_weight));
        terms.push(
            "intra",
            1.0,
            reconstruction_l1(&est_crop, &gt_crop, switch, cfg.lab_weights, opts.thr)?,
        )?;
        self.self_reconstruction(&mut terms, &f_ref, &colour_ref, &gt_ref, opts)?;
        if on.concentration && opts.concentration {
            terms.push(
                "concentration",
                cfg.concentration_weight,
                concentration_switch(&aff, (hp, wp), &self.concentration())?,
            )?;
        }

        // Inter-video transformation: every crop pixel against every reference pixel of the
        // batch; its decoded reconstruction must agree with the intra-video one (no detach).
        if on.inter_video {
            let inter = inter_video(&f_crop, &f_ref, &colour_ref, cfg.temp)?;
            let est_inter = self.colour.decode(&inter.reconstruction)?;
            terms.push(
                "inter",
                cfg.inter_weight,
                reconstruction_l1(&est_inter, &est_crop, None, cfg.lab_weights, opts.thr)?,
            )?;
            terms.push("sparsity", cfg.sparsity_weight, inter.sparsity)?;
        }
        debug_assert_eq!(bbox.dims(), [b, 4]);
        let total = terms.total()?;
        Ok(StepOutput {
            terms,
            total,
            center: Some(center),
            bbox: Some(bbox),
        })
    }
}

/// `[B, C, H, W]` → `[B, C·s², H/s, W/s]`: channel `c·s² + i·s + j` of cell `(y, x)` is pixel
/// `(y·s + i, x·s + j)` of channel `c` (PyTorch's `pixel_unshuffle`).
fn space_to_depth(x: &Tensor, s: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    if h % s != 0 || w % s != 0 {
        return Err(Error::op(
            OP,
            format!("Lab patches of {s}×{s} need sides multiple of {s}, got {h}×{w}"),
        ));
    }
    let (hs, ws) = (h / s, w / s);
    Ok(x.reshape((b, c, hs, s, ws, s))? // [B, C, h, s, w, s]
        .permute((0, 1, 3, 5, 2, 4))? // [B, C, s, s, h, w]
        .contiguous()?
        .reshape((b, c * s * s, hs, ws))?)
}

/// The inverse of [`space_to_depth`] for 3-channel images (PyTorch's `pixel_shuffle`).
fn depth_to_space(f: &Tensor) -> Result<Tensor> {
    let (b, cs2, h, w) = f.dims4()?;
    let s = ((cs2 / 3) as f64).sqrt().round() as usize;
    if s == 0 || 3 * s * s != cs2 {
        return Err(Error::op(
            OP,
            format!("Lab patches have 3·s² channels, got {cs2}"),
        ));
    }
    Ok(f.reshape((b, 3, s, s, h, w))? // [B, 3, s, s, h, w]
        .permute((0, 1, 4, 2, 5, 3))? // [B, 3, h, s, w, s]
        .contiguous()?
        .reshape((b, 3, h * s, w * s))?)
}

/// `(B, H, W)` of a `[B, 3, H, W]` image batch with sides multiples of `s`.
fn check_image(x: &Tensor, name: &str, s: usize) -> Result<(usize, usize, usize)> {
    match *x.dims() {
        [b, 3, h, w] if b > 0 && h > 0 && w > 0 && h % s == 0 && w % s == 0 => Ok((b, h, w)),
        [0, ..] => Err(Error::op(OP, format!("the {name} batch is empty"))),
        _ => Err(Error::op(
            OP,
            format!(
                "{name} must be [B, 3, H, W] with H and W positive multiples of {s}, got {:?}",
                x.dims()
            ),
        )),
    }
}

/// Zeroes `dropped` channels of an encoder input and rescales by `3/(3 − k)` (the reference's
/// `dropout2d`, with the draw made by the data pipeline).
fn drop_channels(x: &Tensor, dropped: &[usize]) -> Result<Tensor> {
    if dropped.is_empty() {
        return Ok(x.clone());
    }
    if dropped.len() > 2 || dropped.iter().any(|&c| c > 2) {
        return Err(Error::op(
            OP,
            format!("channel dropout drops 1 or 2 of channels 0..3, got {dropped:?}"),
        ));
    }
    let scale = 3.0 / (3 - dropped.len()) as f32;
    let mut mask = [scale; 3];
    for &c in dropped {
        mask[c] = 0.0;
    }
    let m = Tensor::from_slice(&mask, (1, 3, 1, 1), x.device())?.to_dtype(x.dtype())?;
    Ok(x.broadcast_mul(&m)?)
}

/// The target's cell coordinates `[N, 2]` (x, y) as the reference builds them: the identity
/// `affine_grid` mapped by `(g + 1)/2 · size`, i.e. `j · W/(W − 1)` with `align_corners`
/// (spanning `[0, W]`) and `j + 0.5` without.
fn cell_grid(h: usize, w: usize, align_corners: bool, device: &Device) -> Result<Tensor> {
    let coord = |j: usize, n: usize| -> f32 {
        if align_corners {
            if n == 1 {
                n as f32 / 2.0
            } else {
                j as f32 * n as f32 / (n - 1) as f32
            }
        } else {
            j as f32 + 0.5
        }
    };
    let mut data = Vec::with_capacity(2 * h * w);
    for y in 0..h {
        for x in 0..w {
            data.push(coord(x, w));
            data.push(coord(y, h));
        }
    }
    Ok(Tensor::from_vec(data, (h * w, 2), device)?)
}

/// The reference's `center2bbox`: a `size`-sided box (in cells) around each centre, shifted
/// inward at the left/top border and truncated at the right/bottom border. A clamped coordinate
/// is a constant (no gradient), as the reference's in-place masking makes it.
fn center_to_box(center: &Tensor, size: (usize, usize), map: (usize, usize)) -> Result<Tensor> {
    let (sh, sw) = (size.0 as f64, size.1 as f64);
    let (mh, mw) = (map.0 as f64, map.1 as f64);
    let side = |c: Tensor, len: f64, limit: f64| -> Result<(Tensor, Tensor)> {
        let lo = c.affine(1.0, -len / 2.0)?;
        // lo < 0 → 0 (constant).
        let keep = lo.detach().ge(0.0)?.to_dtype(lo.dtype())?;
        let lo = (lo * keep)?;
        let hi = lo.affine(1.0, len)?;
        // hi > limit → limit (constant).
        let keep = hi.detach().le(limit)?.to_dtype(hi.dtype())?;
        let clamped = keep.affine(-limit, limit)?; // limit where not kept, 0 where kept
        let hi = ((hi * keep)? + clamped)?;
        Ok((lo, hi))
    };
    let (l, r) = side(center.narrow(1, 0, 1)?, sw, mw)?;
    let (t, b) = side(center.narrow(1, 1, 1)?, sh, mh)?;
    Ok(Tensor::cat(&[l, r, t, b], 1)?) // [B, 4]
}

/// `diff_crop`: samples `out` (h, w) points of the box `bbox · scale` (`[B, 4]`: l, r, t, b in
/// units of `x`'s pixels after scaling) from `x` (`[B, C, H, W]`) by `affine_grid` + bilinear
/// `grid_sample` with zero padding; gradients reach `x` and the box.
fn crop(
    x: &Tensor,
    bbox: &Tensor,
    scale: f64,
    out: (usize, usize),
    align_corners: bool,
) -> Result<Tensor> {
    crop_in(x, bbox, scale, out, align_corners, None)
}

/// [`crop`], where `x` may be a [`Window`] of the map the box refers to. The sampling positions
/// are those of the crop of the whole map, shifted into the window: the affine map of the whole
/// map's normalised coordinates `u` to the window's, `u_w = α·u + β`, is folded into θ
/// (align_corners: index `(u + 1)(W − 1)/2`, else `((u + 1)W − 1)/2`).
fn crop_in(
    x: &Tensor,
    bbox: &Tensor,
    scale: f64,
    out: (usize, usize),
    align_corners: bool,
    window: Option<&Window>,
) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let bx = if scale == 1.0 {
        bbox.clone()
    } else {
        bbox.affine(scale, 0.0)?
    };
    let (map_h, map_w) = window.map_or((h, w), |win| win.map);
    let (wf, hf) = (map_w as f64, map_h as f64);
    let l = bx.narrow(1, 0, 1)?;
    let r = bx.narrow(1, 1, 1)?;
    let t = bx.narrow(1, 2, 1)?;
    let bo = bx.narrow(1, 3, 1)?;
    let mut a = (&r - &l)?.affine(1.0 / wf, 0.0)?; // [B, 1]
    let mut cx = (&l + &r)?.affine(1.0 / wf, -1.0)?;
    let mut e = (&bo - &t)?.affine(1.0 / hf, 0.0)?;
    let mut f = (&t + &bo)?.affine(1.0 / hf, -1.0)?;
    if let Some(Window { origins, .. }) = window {
        // Per axis: α and each sample's β for a window of `len` cells at `o` in a map of `full`.
        let fold = |full: usize, len: usize, o: usize| -> (f64, f64) {
            let (full, len, o) = (full as f64, len as f64, o as f64);
            if align_corners {
                let alpha = (full - 1.0) / (len - 1.0);
                (alpha, (full - 1.0 - 2.0 * o) / (len - 1.0) - 1.0)
            } else {
                (full / len, (full - 2.0 * o) / len - 1.0)
            }
        };
        let (ax, _) = fold(map_w, w, 0);
        let (ay, _) = fold(map_h, h, 0);
        let bx_: Vec<f32> = origins
            .iter()
            .map(|&(_, x0)| fold(map_w, w, x0).1 as f32)
            .collect();
        let by_: Vec<f32> = origins
            .iter()
            .map(|&(y0, _)| fold(map_h, h, y0).1 as f32)
            .collect();
        let beta_x = Tensor::from_vec(bx_, (b, 1), x.device())?.to_dtype(cx.dtype())?;
        let beta_y = Tensor::from_vec(by_, (b, 1), x.device())?.to_dtype(f.dtype())?;
        a = a.affine(ax, 0.0)?;
        cx = cx.affine(ax, 0.0)?.broadcast_add(&beta_x)?;
        e = e.affine(ay, 0.0)?;
        f = f.affine(ay, 0.0)?.broadcast_add(&beta_y)?;
    }
    let zero = a.zeros_like()?;
    let theta = Tensor::cat(&[a, zero.clone(), cx, zero, e, f], 1)?.reshape((b, 2, 3))?;
    let grid = affine_grid(&theta, (b, c, out.0, out.1), align_corners)?;
    grid_sample(x, &grid, align_corners)
}

/// A window of the target map (in cells) that holds every cell a box's crop reads, with a
/// margin; one size for the whole batch, each sample at its own origin.
#[derive(Debug, Clone, PartialEq)]
struct Window {
    /// The whole map's (height, width) in cells.
    map: (usize, usize),
    /// The window's (height, width) in cells.
    size: (usize, usize),
    /// Each sample's (y0, x0) in cells.
    origins: Vec<(usize, usize)>,
}

/// A first and last cell (inclusive) along one axis.
type Span = (usize, usize);

impl Window {
    /// The window for boxes `[l, r, t, b]` (cells) on a map of `map` cells, or `None` when it
    /// would cover more than 3/4 of the map (encoding the whole map is then as cheap) or be
    /// narrower than 2 cells.
    fn around(boxes: &[Vec<f32>], map: (usize, usize), margin: usize) -> Option<Self> {
        // Cells read by bilinear sampling inside [lo, hi] (either corner convention), widened.
        let span = |lo: f32, hi: f32, len: usize| -> Span {
            let first = (lo.floor() as isize - 1 - margin as isize).max(0) as usize;
            let last = ((hi.ceil() as isize + 1 + margin as isize).max(0) as usize).min(len - 1);
            (first.min(last), last)
        };
        let rows: Vec<Span> = boxes.iter().map(|b| span(b[2], b[3], map.0)).collect();
        let cols: Vec<Span> = boxes.iter().map(|b| span(b[0], b[1], map.1)).collect();
        let size = |spans: &[Span]| spans.iter().map(|&(a, b)| b + 1 - a).max();
        let (wh, ww) = (size(&rows)?, size(&cols)?);
        if wh < 2 || ww < 2 || 4 * wh * ww > 3 * map.0 * map.1 {
            return None;
        }
        let origins = rows
            .iter()
            .zip(&cols)
            .map(|(&(y, _), &(x, _))| (y.min(map.0 - wh), x.min(map.1 - ww)))
            .collect();
        Some(Self {
            map,
            size: (wh, ww),
            origins,
        })
    }
}

#[cfg(test)]
mod patch_tests {
    use super::*;

    #[test]
    fn lab_patches_are_pixel_unshuffle_and_invert() -> Result<()> {
        let x = Tensor::arange(0f32, 2.0 * 3.0 * 4.0 * 6.0, &Device::Cpu)?.reshape((2, 3, 4, 6))?;
        let f = space_to_depth(&x, 2)?;
        assert_eq!(f.dims(), [2, 12, 2, 3]);
        // channel c·4 + i·2 + j of cell (y, x) is pixel (2y + i, 2x + j) of channel c
        let (c, i, j, y, xx) = (1usize, 1usize, 0usize, 1usize, 2usize);
        let want = x
            .get(1)?
            .get(c)?
            .get(2 * y + i)?
            .get(2 * xx + j)?
            .to_scalar::<f32>()?;
        let got = f
            .get(1)?
            .get(c * 4 + i * 2 + j)?
            .get(y)?
            .get(xx)?
            .to_scalar::<f32>()?;
        assert_eq!(got, want);
        let back = depth_to_space(&f)?;
        let d = (back - &x)?.abs()?.sum_all()?.to_scalar::<f32>()?;
        assert_eq!(d, 0.0);
        assert!(space_to_depth(&x, 4).is_err());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    /// `center2bbox` at the borders (never reached by the golden fixtures, whose centres lie
    /// mid-frame): shifted inward at left/top, truncated at right/bottom, clamped coordinates
    /// constant; values equal to `vssl_data::track::center_to_box`.
    #[test]
    fn box_rule_at_the_borders() -> Result<()> {
        let centres = [[3.0f32, 30.0], [40.0, 2.0], [70.0, 77.5], [20.0, 20.0]];
        let c = Var::from_vec(centres.concat(), (4, 2), &Device::Cpu)?;
        let b = center_to_box(c.as_tensor(), (32, 32), (80, 80))?;
        let got = b.to_vec2::<f32>()?;
        for (i, [cx, cy]) in centres.iter().enumerate() {
            let want = vssl_data::track::center_to_box(*cx, *cy, 32.0, 80.0, 80.0);
            assert_eq!(
                got[i],
                vec![want.x1, want.x2, want.y1, want.y2],
                "centre {i}"
            );
        }
        // Left shifted: l = 0, r = 32; truncated right: r = 80 < l + 32.
        assert_eq!(got[0][..2], [0.0, 32.0]);
        assert_eq!(got[2][..2], [54.0, 80.0]);
        // d(Σ box)/d(centre): each free coordinate contributes 1, a clamped one 0.
        let g = b.sum_all()?.backward()?;
        let g = g.get(c.as_tensor()).expect("gradient").to_vec2::<f32>()?;
        // centre 0: x clamped on both sides of l (l = 0 const, r = l + 32 const) → 0; y free → 2.
        assert_eq!(g[0], vec![0.0, 2.0]);
        // centre 2: x: l free (1), r truncated (0); y: t free, b truncated.
        assert_eq!(g[2], vec![1.0, 1.0]);
        assert_eq!(g[3], vec![2.0, 2.0]);
        Ok(())
    }

    /// Cropping a window of the map (as the colour window does) samples the same values, with
    /// the same gradient to the box, as cropping the whole map: both corner conventions, boxes in
    /// the middle, at the left/top border, truncated at the right/bottom border. (Box sides are
    /// chosen so that no sample lands exactly on a cell: there the bilinear derivative is
    /// one-sided and rounding picks the side.)
    #[test]
    fn crop_of_a_window_equals_crop_of_the_map() -> Result<()> {
        let dev = Device::Cpu;
        let (h, w) = (20usize, 23usize);
        let map = Tensor::randn(0f32, 1.0, (3, 2, h, w), &dev)?;
        let boxes = [
            [6.3f32, 14.3, 5.7, 13.7],
            [0.0, 7.7, 0.0, 7.9],
            [16.5, 23.0, 13.2, 20.0],
        ];
        for ac in [true, false] {
            let bv = Var::from_vec(boxes.concat(), (3, 4), &dev)?;
            let full = crop(&map, bv.as_tensor(), 1.0, (8, 8), ac)?;
            let rows: Vec<Vec<f32>> = boxes.iter().map(|b| b.to_vec()).collect();
            let win = Window::around(&rows, (h, w), 1).expect("a window smaller than the map");
            assert!(win.size.0 < h && win.size.1 < w, "{win:?}");
            let parts = win
                .origins
                .iter()
                .enumerate()
                .map(|(i, &(y0, x0))| -> Result<Tensor> {
                    Ok(map
                        .narrow(0, i, 1)?
                        .narrow(2, y0, win.size.0)?
                        .narrow(3, x0, win.size.1)?)
                })
                .collect::<Result<Vec<_>>>()?;
            let part = Tensor::cat(&parts, 0)?;
            let bw = Var::from_vec(boxes.concat(), (3, 4), &dev)?;
            let windowed = crop_in(&part, bw.as_tensor(), 1.0, (8, 8), ac, Some(&win))?;
            let d = (&full - &windowed)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-5, "align_corners {ac}: values differ by {d}");
            let weight = Tensor::randn(0f32, 1.0, full.dims(), &dev)?;
            let gf = (&full * &weight)?.sum_all()?.backward()?;
            let gw = (&windowed * &weight)?.sum_all()?.backward()?;
            let (gf, gw) = (
                gf.get(bv.as_tensor()).expect("box gradient"),
                gw.get(bw.as_tensor()).expect("box gradient"),
            );
            let d = (gf - gw)?.abs()?.max_all()?.to_scalar::<f32>()?;
            let scale = gf.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(
                d <= 1e-4 * scale.max(1.0),
                "align_corners {ac}: box gradients differ by {d}"
            );
        }
        Ok(())
    }

    /// With `align_corners = false` a crop of an integer box equals slicing.
    #[test]
    fn crop_of_an_integer_box_is_a_slice() -> Result<()> {
        let x = Tensor::arange(0f32, 2.0 * 8.0 * 8.0, &Device::Cpu)?.reshape((1, 2, 8, 8))?;
        let bbox = Tensor::new(&[[2.0f32, 6.0, 1.0, 5.0]], &Device::Cpu)?;
        let c = crop(&x, &bbox, 1.0, (4, 4), false)?;
        let want = x.narrow(2, 1, 4)?.narrow(3, 2, 4)?;
        let d = (c - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-5, "{d}");
        Ok(())
    }
}
