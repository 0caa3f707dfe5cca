//! Loss-curve plotter: renders training curves to an RGB image.
//!
//! Everything is drawn by hand (grid, frame, 2-px polylines, legend) and text
//! uses a built-in 5x7 bitmap font, so no font files or plotting crates are
//! needed. Output is deterministic: the same input gives identical pixels.

use image::{ImageFormat, Rgb, RgbImage};
use std::fmt;
use std::io::Cursor;

/// One named curve: (x = training step, y = value) points, in any order of x
/// (they are sorted before drawing).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Name shown in the legend.
    pub name: String,
    /// `(step, value)` points; non-finite values break the line.
    pub points: Vec<(u64, f64)>,
}

/// Choice of y-axis scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogY {
    /// Logarithmic when all finite values are > 0 and max/min > 100.
    #[default]
    Auto,
    /// Always logarithmic (values <= 0 are skipped).
    Always,
    /// Always linear.
    Never,
}

/// Plot options.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotOptions {
    /// Image width in pixels (200..=16384).
    pub width: u32,
    /// Image height in pixels (150..=16384).
    pub height: u32,
    /// Title drawn above the plot (empty: none).
    pub title: String,
    /// Label under the x axis (empty: none).
    pub x_label: String,
    /// Label left of the y axis, drawn vertically (empty: none).
    pub y_label: String,
    /// Y-axis scale.
    pub log_y: LogY,
}

impl Default for PlotOptions {
    /// 960x540, title "training loss", x label "step", y label "loss", [`LogY::Auto`].
    fn default() -> Self {
        Self {
            width: 960,
            height: 540,
            title: "training loss".to_string(),
            x_label: "step".to_string(),
            y_label: "loss".to_string(),
            log_y: LogY::Auto,
        }
    }
}

/// Errors from [`render`] and [`encode_png`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlotError {
    /// No series has a drawable point (finite, and > 0 on a log axis).
    NoData,
    /// Image smaller than 200x150 (or a side larger than 16384).
    BadSize {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
    },
    /// PNG encoding failed.
    Encode(String),
}

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoData => write!(f, "no drawable data points to plot"),
            Self::BadSize { width, height } => {
                write!(f, "bad plot size {width}x{height} (min 200x150, max 16384)")
            }
            Self::Encode(msg) => write!(f, "PNG encoding failed: {msg}"),
        }
    }
}

impl std::error::Error for PlotError {}

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const TEXT: Rgb<u8> = Rgb([25, 25, 25]);
const GRID: Rgb<u8> = Rgb([222, 222, 222]);
const GRID_MINOR: Rgb<u8> = Rgb([240, 240, 240]);
const LEGEND_BORDER: Rgb<u8> = Rgb([150, 150, 150]);

/// Series colours (matplotlib "tab10"), used in order and then repeated.
#[rustfmt::skip]
const PALETTE: [Rgb<u8>; 10] = [
    Rgb([31, 119, 180]), Rgb([255, 127, 14]), Rgb([44, 160, 44]), Rgb([214, 39, 40]),
    Rgb([148, 103, 189]), Rgb([140, 86, 75]), Rgb([227, 119, 194]), Rgb([127, 127, 127]),
    Rgb([188, 189, 34]), Rgb([23, 190, 207]),
];

const TICK_LEN: i64 = 4;
const GLYPH_H: i64 = 7;
/// Horizontal advance per character (5-px glyph + 1-px gap) at scale 1.
const ADVANCE: i64 = 6;

/// Drawn for characters outside printable ASCII.
const UNKNOWN_GLYPH: [u8; 7] = [0x00, 0x1F, 0x11, 0x11, 0x11, 0x1F, 0x00];

/// 5x7 glyphs for ASCII 32..=126: seven rows, top first; bit 4 is the leftmost column.
#[rustfmt::skip]
const FONT: [[u8; 7]; 95] = [
    [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // ' '
    [0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04], // '!'
    [0x0A, 0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00], // '"'
    [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A], // '#'
    [0x04, 0x0F, 0x14, 0x0E, 0x05, 0x1E, 0x04], // '$'
    [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03], // '%'
    [0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D], // '&'
    [0x0C, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00], // '\''
    [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02], // '('
    [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08], // ')'
    [0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00], // '*'
    [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00], // '+'
    [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08], // ','
    [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00], // '-'
    [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C], // '.'
    [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00], // '/'
    [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E], // '0'
    [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E], // '1'
    [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F], // '2'
    [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E], // '3'
    [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02], // '4'
    [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E], // '5'
    [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E], // '6'
    [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08], // '7'
    [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E], // '8'
    [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C], // '9'
    [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00], // ':'
    [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x04, 0x08], // ';'
    [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02], // '<'
    [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00], // '='
    [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08], // '>'
    [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04], // '?'
    [0x0E, 0x11, 0x01, 0x0D, 0x15, 0x15, 0x0E], // '@'
    [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11], // 'A'
    [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E], // 'B'
    [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E], // 'C'
    [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C], // 'D'
    [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F], // 'E'
    [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10], // 'F'
    [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F], // 'G'
    [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11], // 'H'
    [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E], // 'I'
    [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C], // 'J'
    [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11], // 'K'
    [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F], // 'L'
    [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11], // 'M'
    [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11], // 'N'
    [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E], // 'O'
    [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10], // 'P'
    [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D], // 'Q'
    [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11], // 'R'
    [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E], // 'S'
    [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04], // 'T'
    [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E], // 'U'
    [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04], // 'V'
    [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A], // 'W'
    [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11], // 'X'
    [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04], // 'Y'
    [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F], // 'Z'
    [0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E], // '['
    [0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00], // '\\'
    [0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E], // ']'
    [0x04, 0x0A, 0x11, 0x00, 0x00, 0x00, 0x00], // '^'
    [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F], // '_'
    [0x08, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00], // '`'
    [0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F], // 'a'
    [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E], // 'b'
    [0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E], // 'c'
    [0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F], // 'd'
    [0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E], // 'e'
    [0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08], // 'f'
    [0x00, 0x00, 0x0F, 0x11, 0x0F, 0x01, 0x0E], // 'g'
    [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11], // 'h'
    [0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E], // 'i'
    [0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C], // 'j'
    [0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12], // 'k'
    [0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x06], // 'l'
    [0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11], // 'm'
    [0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11], // 'n'
    [0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E], // 'o'
    [0x00, 0x00, 0x1E, 0x11, 0x1E, 0x10, 0x10], // 'p'
    [0x00, 0x00, 0x0D, 0x13, 0x0F, 0x01, 0x01], // 'q'
    [0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10], // 'r'
    [0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E], // 's'
    [0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06], // 't'
    [0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D], // 'u'
    [0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04], // 'v'
    [0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A], // 'w'
    [0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11], // 'x'
    [0x00, 0x00, 0x11, 0x11, 0x0F, 0x01, 0x0E], // 'y'
    [0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F], // 'z'
    [0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02], // '{'
    [0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04], // '|'
    [0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08], // '}'
    [0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00], // '~'
];

fn glyph(c: char) -> &'static [u8; 7] {
    match u32::from(c) {
        code @ 32..=126 => &FONT[(code - 32) as usize],
        _ => &UNKNOWN_GLYPH,
    }
}

/// Width in pixels of `text` drawn at `scale`.
fn text_width(text: &str, scale: i64) -> i64 {
    (text.chars().count() as i64 * ADVANCE - 1).max(0) * scale
}

/// Sets one pixel, ignoring coordinates outside the image.
fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && x < i64::from(img.width()) && y < i64::from(img.height()) {
        img.put_pixel(x as u32, y as u32, c);
    }
}

/// Draws `text` with its top-left corner at (x, y). When `vertical`, the text
/// is turned 90 degrees counter-clockwise: (x, y) is its bottom-left corner
/// and it reads upwards.
fn draw_text(img: &mut RgbImage, x: i64, y: i64, text: &str, scale: i64, vertical: bool) {
    for (i, ch) in text.chars().enumerate() {
        for (row, bits) in glyph(ch).iter().enumerate() {
            for col in (0..5).filter(|col| (bits >> (4 - col)) & 1 == 1) {
                let (tx, ty) = ((i as i64 * ADVANCE + col) * scale, row as i64 * scale);
                for (dx, dy) in (0..scale).flat_map(|dx| (0..scale).map(move |dy| (dx, dy))) {
                    match vertical {
                        true => put(img, x + ty + dy, y - tx - dx, TEXT),
                        false => put(img, x + tx + dx, y + ty + dy, TEXT),
                    }
                }
            }
        }
    }
}

/// Inclusive pixel rectangle.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rect {
    left: i64,
    top: i64,
    right: i64,
    bottom: i64,
}

impl Rect {
    fn new(left: i64, top: i64, right: i64, bottom: i64) -> Self {
        Self {
            left,
            top,
            right,
            bottom,
        }
    }

    fn fill(&self, img: &mut RgbImage, c: Rgb<u8>) {
        let (w, h) = (self.right - self.left + 1, self.bottom - self.top + 1);
        stamp(img, self.left, self.top, w, h, c, *self);
    }

    fn outline(&self, img: &mut RgbImage, c: Rgb<u8>) {
        for x in self.left..=self.right {
            put(img, x, self.top, c);
            put(img, x, self.bottom, c);
        }
        for y in self.top..=self.bottom {
            put(img, self.left, y, c);
            put(img, self.right, y, c);
        }
    }
}

/// Fills the `w`x`h` block with top-left (x, y), clipped to `clip`.
fn stamp(img: &mut RgbImage, x: i64, y: i64, w: i64, h: i64, c: Rgb<u8>, clip: Rect) {
    for py in y.max(clip.top)..(y + h).min(clip.bottom + 1) {
        for px in x.max(clip.left)..(x + w).min(clip.right + 1) {
            put(img, px, py, c);
        }
    }
}

/// 2-px Bresenham line from `a` to `b`, clipped to `clip`.
fn draw_line(img: &mut RgbImage, a: (i64, i64), b: (i64, i64), c: Rgb<u8>, clip: Rect) {
    let (mut x, mut y) = a;
    let (dx, dy) = ((b.0 - x).abs(), -(b.1 - y).abs());
    let (sx, sy) = ((b.0 - x).signum(), (b.1 - y).signum());
    let mut err = dx + dy;
    loop {
        stamp(img, x, y, 2, 2, c, clip);
        if (x, y) == b {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

/// Rounds a pixel coordinate, keeping absurd values bounded (NaN maps to 0).
fn to_px(v: f64) -> i64 {
    v.round().clamp(-1e6, 1e6) as i64
}

fn all_points(series: &[Series]) -> impl Iterator<Item = &(u64, f64)> + Clone {
    series.iter().flat_map(|s| &s.points)
}

/// (min, max) of the values; (inf, -inf) when there are none.
fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let init = (f64::INFINITY, f64::NEG_INFINITY);
    values.fold(init, |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// Whether the y axis is logarithmic for this data and mode.
fn choose_log(series: &[Series], mode: LogY) -> bool {
    let ys = all_points(series).map(|p| p.1).filter(|y| y.is_finite());
    match mode {
        LogY::Always => true,
        LogY::Never => false,
        LogY::Auto if ys.clone().any(|y| y <= 0.0) => false,
        LogY::Auto => {
            let (lo, hi) = min_max(ys);
            lo.is_finite() && hi / lo > 100.0
        }
    }
}

/// Y value in axis units (log10 in log mode); `None` when not drawable.
fn y_transform(y: f64, log: bool) -> Option<f64> {
    match (y.is_finite(), log) {
        (true, true) if y > 0.0 => Some(y.log10()),
        (true, false) => Some(y),
        _ => None,
    }
}

/// Widens `[lo, hi]` by `frac` of its span on each side, or by `flat` when
/// the range is (numerically) a single value.
fn pad_range(lo: f64, hi: f64, frac: f64, flat: f64) -> (f64, f64) {
    let pad = match hi - lo {
        span if span <= lo.abs().max(hi.abs()) * 1e-12 => flat,
        span => span * frac,
    };
    (lo - pad, hi + pad)
}

/// "Nice" ticks (1, 2 or 5 x 10^k apart, at least `min_step`) inside
/// `[lo, hi]`: 4..=8 of them when possible, as close to 6 as possible.
fn nice_ticks(lo: f64, hi: f64, min_step: f64) -> Vec<f64> {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return Vec::new();
    }
    let base = span.log10().floor() as i32;
    let mut best: Option<(i64, Vec<f64>)> = None;
    for step in (base - 2..=base + 1).flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k))) {
        let (first, last) = ((lo / step).ceil() as i64, (hi / step).floor() as i64);
        let n = last.saturating_sub(first).saturating_add(1);
        let score = if n >= 4 { (n - 6).abs() } else { 14 - n };
        if step >= min_step && (2..=8).contains(&n) && best.as_ref().is_none_or(|(s, _)| score < *s)
        {
            best = Some((score, (first..=last).map(|i| i as f64 * step).collect()));
        }
    }
    best.map(|(_, ticks)| ticks).unwrap_or_default()
}

/// Major and minor ticks for a log10 axis spanning `[lo, hi]` (log10 units):
/// decades (thinned to at most 8); 1-2-5 steps or plain nice ticks when the
/// range holds fewer than two decades.
fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let in_range = |t: &f64| (lo..=hi).contains(t);
    let (k0, k1) = (lo.ceil() as i64, hi.floor() as i64);
    if k1 > k0 {
        let stride = (k1 - k0 + 8) / 8;
        let major = (k0..=k1).step_by(stride as usize).map(|k| k as f64);
        let minor = (k0 - 1..=k1)
            .filter(|_| stride == 1)
            .flat_map(|k| (2..=9).map(move |m| k as f64 + f64::from(m).log10()))
            .filter(in_range);
        return (major.collect(), minor.collect());
    }
    let ticks: Vec<f64> = (lo.floor() as i64..=hi.ceil() as i64)
        .flat_map(|k| [1.0f64, 2.0, 5.0].map(|m| k as f64 + m.log10()))
        .filter(in_range)
        .collect();
    if ticks.len() >= 2 {
        return (ticks, Vec::new());
    }
    let linear = nice_ticks(10f64.powf(lo), 10f64.powf(hi), 0.0).into_iter();
    (
        linear.filter(|v| *v > 0.0).map(f64::log10).collect(),
        Vec::new(),
    )
}

/// Labels for sorted tick values, with the fewest significant digits (4..=12)
/// that keep neighbouring labels apart.
fn tick_labels(values: &[f64]) -> Vec<String> {
    let mut labels = Vec::new();
    for sig in 4..=12 {
        labels = values.iter().map(|&v| format_tick(v, sig)).collect();
        if labels.windows(2).all(|w| w[0] != w[1]) {
            break;
        }
    }
    labels
}

/// Compact number with at most `sig` significant digits: `0`, `250`, `1.5k`,
/// `0.012`, `1e-3`.
fn format_tick(v: f64, sig: i32) -> String {
    if v == 0.0 || !v.is_finite() {
        return (v + 0.0).to_string(); // "+ 0.0" turns -0 into 0
    }
    // Round away floating-point noise such as 0.30000000000000004.
    let a: f64 = format!("{:.12e}", v.abs()).parse().unwrap_or(v.abs());
    let sign = if v < 0.0 { "-" } else { "" };
    let body = match a {
        a if !(1e-2..1e12).contains(&a) => {
            let mut e = a.log10().floor() as i32;
            let mut m = a / 10f64.powi(e);
            if format!("{m:.0$}", sig as usize - 1).starts_with("10") {
                (m, e) = (m / 10.0, e + 1);
            }
            format!("{}e{e}", decimal(m, sig))
        }
        a if a >= 1e9 => format!("{}G", decimal(a / 1e9, sig)),
        a if a >= 1e6 => format!("{}M", decimal(a / 1e6, sig)),
        a if a >= 1e3 => format!("{}k", decimal(a / 1e3, sig)),
        a => decimal(a, sig),
    };
    format!("{sign}{body}")
}

/// Positive `a` with `sig` significant digits, trailing zeros removed.
fn decimal(a: f64, sig: i32) -> String {
    let decimals = (sig - 1 - a.log10().floor() as i32).clamp(0, 15) as usize;
    let s = format!("{a:.decimals$}");
    match s.contains('.') {
        true => s.trim_end_matches('0').trim_end_matches('.').to_string(),
        false => s,
    }
}

/// Plot geometry: the frame rectangle, axis ranges and ticks. Y values are
/// in axis units: the value itself, or its log10 on a log axis.
#[derive(Debug, Clone)]
struct Axes {
    plot: Rect,
    x_range: (f64, f64),
    y_range: (f64, f64),
    log_y: bool,
    x_ticks: Vec<f64>,
    y_ticks: Vec<f64>,
    x_labels: Vec<String>,
    y_labels: Vec<String>,
    /// Minor grid lines (log axis only).
    y_minor: Vec<f64>,
}

impl Axes {
    fn x_px(&self, x: f64) -> f64 {
        let ((lo, hi), p) = (self.x_range, self.plot);
        p.left as f64 + (x - lo) / (hi - lo) * (p.right - p.left) as f64
    }

    /// Pixel row of `t` in axis units.
    fn t_px(&self, t: f64) -> f64 {
        let ((lo, hi), p) = (self.y_range, self.plot);
        p.bottom as f64 - (t - lo) / (hi - lo) * (p.bottom - p.top) as f64
    }

    /// Pixel row of a data value; `None` if it is not drawable.
    fn y_px(&self, y: f64) -> Option<f64> {
        y_transform(y, self.log_y).map(|t| self.t_px(t))
    }
}

/// Validates the input and computes the plot geometry.
fn layout(series: &[Series], opts: &PlotOptions) -> Result<Axes, PlotError> {
    let (width, height) = (opts.width, opts.height);
    if !(200..=16384).contains(&width) || !(150..=16384).contains(&height) {
        return Err(PlotError::BadSize { width, height });
    }
    let log_y = choose_log(series, opts.log_y);
    let (y_lo, y_hi) = min_max(all_points(series).filter_map(|p| y_transform(p.1, log_y)));
    if y_lo > y_hi {
        return Err(PlotError::NoData);
    }
    let (x_lo, x_hi) = min_max(all_points(series).map(|p| p.0 as f64));
    let x_range = pad_range(x_lo, x_hi, 0.02, 1.0);
    let flat = match (log_y, y_lo) {
        (true, _) => 0.5,
        (false, 0.0) => 1.0,
        (false, y) => y.abs() * 0.5,
    };
    let y_range = pad_range(y_lo, y_hi, 0.05, flat);
    let (y_ticks, y_minor) = match log_y {
        true => log_ticks(y_range.0, y_range.1),
        false => (nice_ticks(y_range.0, y_range.1, 0.0), Vec::new()),
    };
    let x_ticks = nice_ticks(x_range.0, x_range.1, 1.0);
    let y_values: Vec<f64> = match log_y {
        true => y_ticks.iter().map(|t| 10f64.powf(*t)).collect(),
        false => y_ticks.clone(),
    };
    let (x_labels, y_labels) = (tick_labels(&x_ticks), tick_labels(&y_values));
    let tick_w = y_labels.iter().map(|l| text_width(l, 1));
    let space = |text: &str, px: i64| if text.is_empty() { 0 } else { px };
    let left = 8 + space(&opts.y_label, GLYPH_H + 8) + tick_w.max().unwrap_or(0) + TICK_LEN + 4;
    let top = 10 + space(&opts.title, 2 * GLYPH_H + 10);
    let below = TICK_LEN + 4 + GLYPH_H + 8 + space(&opts.x_label, GLYPH_H + 8);
    let (right, bottom) = (i64::from(width) - 20, i64::from(height) - 1 - below);
    Ok(Axes {
        plot: Rect::new(left, top, right, bottom),
        x_range,
        y_range,
        log_y,
        x_ticks,
        y_ticks,
        x_labels,
        y_labels,
        y_minor,
    })
}

/// Draws one series as 2-px polylines in x order, breaking at undrawable
/// points; an isolated point becomes a 3x3 dot.
fn draw_series(img: &mut RgbImage, axes: &Axes, s: &Series, c: Rgb<u8>) {
    let mut points = s.points.clone();
    points.sort_by_key(|p| p.0);
    let p = axes.plot;
    let inner = Rect::new(p.left + 1, p.top + 1, p.right - 1, p.bottom - 1);
    let flush = |img: &mut RgbImage, run: &mut Vec<(i64, i64)>| {
        if let [(x, y)] = run[..] {
            stamp(img, x - 1, y - 1, 3, 3, c, inner);
        }
        for w in run.windows(2) {
            draw_line(img, w[0], w[1], c, inner);
        }
        run.clear();
    };
    let mut run = Vec::new();
    for &(x, y) in &points {
        match axes.y_px(y) {
            Some(py) => run.push((to_px(axes.x_px(x as f64)), to_px(py))),
            None => flush(img, &mut run),
        }
    }
    flush(img, &mut run);
}

/// Legend box (line sample + name per series) in the top-right corner inside
/// the plot area. Long names are shortened; entries that do not fit are
/// summarised as "+N more".
fn draw_legend(img: &mut RgbImage, plot: Rect, series: &[Series]) {
    const PAD: i64 = 6;
    const ROW: i64 = 12;
    const SAMPLE: i64 = 18;
    let max_chars = (((plot.right - plot.left) / 2 - 40) / ADVANCE).max(4) as usize;
    let max_rows = ((plot.bottom - plot.top - 23) / ROW).max(1) as usize;
    let short = |name: &str| match name.chars().count() <= max_chars {
        true => name.to_string(),
        false => name.chars().take(max_chars - 2).collect::<String>() + "..",
    };
    let colours = PALETTE.iter().cycle().map(|c| Some(*c));
    let mut entries: Vec<_> = series.iter().map(|s| short(&s.name)).zip(colours).collect();
    if entries.len() > max_rows {
        let more = format!("+{} more", entries.len() + 1 - max_rows);
        entries.truncate(max_rows - 1);
        entries.push((more, None));
    }
    let text_w = entries.iter().map(|(n, _)| text_width(n, 1)).max();
    let w = 2 * PAD + SAMPLE + 6 + text_w.unwrap_or(0);
    let h = 2 * PAD + ROW * entries.len() as i64 - 5;
    let (x0, y0) = (plot.right - 8 - w, plot.top + 8);
    let frame = Rect::new(x0, y0, x0 + w, y0 + h);
    frame.fill(img, WHITE);
    frame.outline(img, LEGEND_BORDER);
    for (i, (name, colour)) in entries.iter().enumerate() {
        let y = y0 + PAD + i as i64 * ROW;
        let (a, b) = ((x0 + PAD, y + 3), (x0 + PAD + SAMPLE - 2, y + 3));
        if let Some(c) = *colour {
            draw_line(img, a, b, c, frame);
        }
        draw_text(img, x0 + PAD + SAMPLE + 6, y, name, 1, false);
    }
}

/// Renders the series as a line chart on a white background.
///
/// Errors: [`PlotError::BadSize`] for images smaller than 200x150 (or larger
/// than 16384 on a side), [`PlotError::NoData`] when no series has a drawable
/// point.
pub fn render(series: &[Series], opts: &PlotOptions) -> Result<RgbImage, PlotError> {
    let axes = layout(series, opts)?;
    let p = axes.plot;
    let mut img = RgbImage::from_pixel(opts.width, opts.height, WHITE);
    let minor = axes.y_minor.iter().map(|&t| (t, GRID_MINOR));
    for (t, c) in minor.chain(axes.y_ticks.iter().map(|&t| (t, GRID))) {
        let y = to_px(axes.t_px(t));
        (p.left + 1..p.right).for_each(|x| put(&mut img, x, y, c));
    }
    for &t in &axes.x_ticks {
        let x = to_px(axes.x_px(t));
        (p.top + 1..p.bottom).for_each(|y| put(&mut img, x, y, GRID));
    }
    for (s, c) in series.iter().zip(PALETTE.iter().cycle()) {
        draw_series(&mut img, &axes, s, *c);
    }
    p.outline(&mut img, BLACK);
    draw_legend(&mut img, p, series);

    // Tick marks and labels; a label that would overlap the previous one is skipped.
    let mut last_right = i64::MIN;
    for (&t, label) in axes.x_ticks.iter().zip(&axes.x_labels) {
        let x = to_px(axes.x_px(t));
        (1..=TICK_LEN).for_each(|d| put(&mut img, x, p.bottom + d, BLACK));
        let w = text_width(label, 1);
        let lx = (x - w / 2).clamp(0, (i64::from(opts.width) - w).max(0));
        if lx > last_right + 6 {
            draw_text(&mut img, lx, p.bottom + TICK_LEN + 4, label, 1, false);
            last_right = lx + w;
        }
    }
    let mut last_top = i64::MAX;
    for (&t, label) in axes.y_ticks.iter().zip(&axes.y_labels) {
        let y = to_px(axes.t_px(t));
        (1..=TICK_LEN).for_each(|d| put(&mut img, p.left - d, y, BLACK));
        let lx = p.left - TICK_LEN - 4 - text_width(label, 1);
        let ly = y - GLYPH_H / 2;
        if ly + GLYPH_H + 3 < last_top {
            draw_text(&mut img, lx, ly, label, 1, false);
            last_top = ly;
        }
    }

    // Axis labels and title, centred on the plot area.
    let mid_x = (p.left + p.right) / 2;
    let (xw, yw) = (text_width(&opts.x_label, 1), text_width(&opts.y_label, 1));
    let x_label_y = p.bottom + TICK_LEN + 4 + GLYPH_H + 8;
    let x_label_x = (mid_x - xw / 2).max(0);
    draw_text(&mut img, x_label_x, x_label_y, &opts.x_label, 1, false);
    let y_label_bottom = ((p.top + p.bottom + yw) / 2).min(i64::from(opts.height) - 1);
    draw_text(&mut img, 8, y_label_bottom, &opts.y_label, 1, true);
    let title_x = (mid_x - text_width(&opts.title, 2) / 2).max(4);
    draw_text(&mut img, title_x, 8, &opts.title, 2, false);
    Ok(img)
}

/// Encodes an image as PNG bytes.
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>, PlotError> {
    let mut buf = Cursor::new(Vec::new());
    let written = img.write_to(&mut buf, ImageFormat::Png);
    written.map_err(|e| PlotError::Encode(e.to_string()))?;
    Ok(buf.into_inner())
}

/// Draws the weighted total loss and every unweighted term of a run's `metrics.jsonl` records
/// against the step, and writes the PNG to `path` atomically.
///
/// # Errors
/// [`vssl_core::Error::File`] naming `path` when there is nothing to draw or it cannot be
/// written.
pub fn write_loss_curve(
    records: &[crate::run::StepRecord],
    path: &std::path::Path,
) -> vssl_core::Result<()> {
    let mut series = vec![Series {
        name: "total (weighted)".into(),
        points: records.iter().map(|r| (r.step, r.loss)).collect(),
    }];
    for r in records {
        for t in &r.terms {
            let name = format!("{} (x{})", t.name, t.weight);
            match series.iter_mut().find(|s| s.name == name) {
                Some(s) => s.points.push((r.step, t.value)),
                None => series.push(Series {
                    name,
                    points: vec![(r.step, t.value)],
                }),
            }
        }
    }
    let err =
        |e: PlotError| vssl_core::Error::file(path, format!("cannot draw the loss curve: {e}"));
    let img = render(&series, &PlotOptions::default()).map_err(err)?;
    let bytes = encode_png(&img).map_err(err)?;
    vssl_core::io::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, points: &[(u64, f64)]) -> Series {
        let (name, points) = (name.to_string(), points.to_vec());
        Series { name, points }
    }

    fn opts(log_y: LogY, width: u32, height: u32) -> PlotOptions {
        let d = PlotOptions::default();
        PlotOptions {
            log_y,
            width,
            height,
            ..d
        }
    }

    fn linear() -> PlotOptions {
        opts(LogY::Never, 960, 540)
    }

    /// Pixels of colour `c` in the inclusive column range `xs` and row range `ys`.
    fn count(img: &RgbImage, xs: (i64, i64), ys: (i64, i64), c: Rgb<u8>) -> usize {
        let pixels = (ys.0..=ys.1).flat_map(|y| (xs.0..=xs.1).map(move |x| (x, y)));
        pixels
            .filter(|&(x, y)| *img.get_pixel(x as u32, y as u32) == c)
            .count()
    }

    #[test]
    fn constant_series_row_matches_mapping() {
        let flat: Vec<_> = (0..=10).map(|i| (i * 100, 1.0)).collect();
        let ramp: Vec<_> = (0..=10).map(|i| (i * 100, i as f64 * 0.4)).collect();
        let (data, o) = (vec![series("flat", &flat), series("ramp", &ramp)], linear());
        let axes = layout(&data, &o).unwrap();
        let p = axes.plot;
        // Data y range [0, 4] padded by 5% is [-0.2, 4.2]: 1.0 sits 1.2/4.4 up from the bottom.
        assert!((axes.y_range.0 + 0.2).abs() < 1e-9 && (axes.y_range.1 - 4.2).abs() < 1e-9);
        let expected = p.bottom as f64 - 1.2 / 4.4 * (p.bottom - p.top) as f64;
        let row = axes.y_px(1.0).unwrap();
        assert!((row - expected).abs() < 1e-9, "{row} vs {expected}");
        let (img, row) = (render(&data, &o).unwrap(), to_px(row));
        // Right of x = 250, where the ramp crosses y = 1.
        let cols = (to_px(axes.x_px(400.0)), to_px(axes.x_px(950.0)));
        let full = (cols.1 - cols.0 + 1) as usize;
        assert_eq!(count(&img, cols, (row, row), PALETTE[0]), full);
        assert_eq!(count(&img, cols, (row - 3, row - 3), PALETTE[0]), 0);
        assert_eq!(count(&img, cols, (row + 4, row + 4), PALETTE[0]), 0);
    }

    #[test]
    fn single_point_constant_does_not_divide_by_zero() {
        let (data, o) = (vec![series("one", &[(5, 1.0)])], linear());
        let axes = layout(&data, &o).unwrap();
        assert!(axes.x_range.1 > axes.x_range.0 && axes.y_range.1 > axes.y_range.0);
        assert_eq!(axes.x_ticks, [4.0, 5.0, 6.0]); // whole steps only
        let (x, y) = (to_px(axes.x_px(5.0)), to_px(axes.y_px(1.0).unwrap()));
        let img = render(&data, &o).unwrap();
        assert_eq!(*img.get_pixel(x as u32, y as u32), PALETTE[0]);
    }

    #[test]
    fn two_series_get_distinct_visible_colours() {
        let up: Vec<_> = (0..=50).map(|i| (i, i as f64)).collect();
        let down: Vec<_> = (0..=50).map(|i| (i, 50.0 - i as f64)).collect();
        let (data, o) = (vec![series("up", &up), series("down", &down)], linear());
        let (img, p) = (render(&data, &o).unwrap(), layout(&data, &o).unwrap().plot);
        assert_ne!(PALETTE[0], PALETTE[1]);
        // Left half of the plot, away from the legend in the top-right corner.
        let xs = (p.left + 1, (p.left + p.right) / 2);
        let ys = (p.top + 1, p.bottom - 1);
        assert!(count(&img, xs, ys, PALETTE[0]) > 100);
        assert!(count(&img, xs, ys, PALETTE[1]) > 100);
    }

    #[test]
    fn nan_leaves_a_gap() {
        let make = |gap: bool| {
            let y = |i: u64| if gap && i == 5 { f64::NAN } else { i as f64 };
            vec![series(
                "s",
                &(0..=10).map(|i| (i, y(i))).collect::<Vec<_>>(),
            )]
        };
        let o = linear();
        let axes = layout(&make(true), &o).unwrap();
        // Columns strictly between the NaN's neighbours, allowing for line thickness.
        let xs = (to_px(axes.x_px(4.0)) + 3, to_px(axes.x_px(6.0)) - 3);
        let ys = (axes.plot.top + 1, axes.plot.bottom - 1);
        assert!(xs.1 > xs.0 + 20);
        let (gap, joined) = (render(&make(true), &o), render(&make(false), &o));
        assert_eq!(count(&gap.unwrap(), xs, ys, PALETTE[0]), 0);
        assert!(count(&joined.unwrap(), xs, ys, PALETTE[0]) > 20);
    }

    #[test]
    fn auto_log_selection() {
        let wide = [series(
            "w",
            &[(0, 1e-3), (1, 0.1), (2, 10.0), (3, f64::NAN)],
        )];
        let narrow = [series("n", &[(0, 0.5), (1, 1.0), (2, 2.0)])];
        let with_zero = [series("z", &[(0, 0.0), (1, 1e-3), (2, 10.0)])];
        assert!(choose_log(&wide, LogY::Auto));
        assert!(!choose_log(&narrow, LogY::Auto));
        assert!(!choose_log(&with_zero, LogY::Auto));
        assert!(choose_log(&narrow, LogY::Always) && !choose_log(&wide, LogY::Never));
        let axes = layout(&wide, &PlotOptions::default()).unwrap();
        assert!(axes.log_y);
        assert_eq!(axes.y_ticks, vec![-3.0, -2.0, -1.0, 0.0, 1.0]);
        assert_eq!(axes.y_labels, ["1e-3", "0.01", "0.1", "1", "10"]);
    }

    #[test]
    fn errors_for_no_data_and_bad_size() {
        let o = PlotOptions::default();
        assert_eq!(render(&[], &o).unwrap_err(), PlotError::NoData);
        let nan = [
            series("a", &[(0, f64::NAN), (1, f64::INFINITY)]),
            series("b", &[]),
        ];
        assert_eq!(render(&nan, &o).unwrap_err(), PlotError::NoData);
        let neg = [series("a", &[(0, -1.0), (1, 0.0)])];
        let always = opts(LogY::Always, 960, 540);
        assert_eq!(render(&neg, &always).unwrap_err(), PlotError::NoData);
        assert!(render(&neg, &o).is_ok());
        let ok = [series("a", &[(0, 1.0)])];
        for (w, h) in [(199, 540), (960, 149), (0, 0), (20_000, 540)] {
            let err = render(&ok, &opts(LogY::Auto, w, h)).unwrap_err();
            assert_eq!(
                err,
                PlotError::BadSize {
                    width: w,
                    height: h
                }
            );
        }
        let min = render(&ok, &opts(LogY::Auto, 200, 150));
        assert_eq!(min.unwrap().dimensions(), (200, 150));
        assert!(PlotError::NoData.to_string().contains("no drawable"));
    }

    #[test]
    fn text_draws_only_inside_its_box() {
        let mut img = RgbImage::from_pixel(60, 30, WHITE);
        draw_text(&mut img, 10, 10, "0123", 1, false);
        assert_eq!(text_width("0123", 1), 23);
        let dark: Vec<_> = img.enumerate_pixels().filter(|p| p.2.0[0] < 100).collect();
        assert!(dark.len() > 30);
        let (xs, ys) = (10..33, 10..17);
        assert!(dark.iter().all(|p| xs.contains(&p.0) && ys.contains(&p.1)));
        let mut big = RgbImage::from_pixel(60, 30, WHITE);
        draw_text(&mut big, 0, 0, "0123", 2, false);
        assert_eq!(big.pixels().filter(|p| **p == TEXT).count(), dark.len() * 4);
    }

    #[test]
    fn glyph_table_sanity() {
        for ch in (32u8..=126).map(char::from) {
            let bits: u32 = glyph(ch).iter().map(|r| r.count_ones()).sum();
            assert_eq!(bits == 0, ch == ' ', "glyph {ch:?}");
            assert!(glyph(ch).iter().all(|r| *r < 32), "{ch:?} wider than 5");
        }
        assert_eq!(glyph('\u{e9}'), &UNKNOWN_GLYPH);
        assert_ne!(glyph('0'), glyph('O'));
    }

    #[test]
    fn tick_formatting_and_counts() {
        let cases = [
            (0.0, "0"),
            (250.0, "250"),
            (1500.0, "1.5k"),
            (0.012, "0.012"),
        ];
        for (v, s) in cases {
            assert_eq!(format_tick(v, 4), s);
        }
        assert_eq!(format_tick(1e-3, 4), "1e-3");
        assert_eq!(format_tick(0.1 + 0.2, 4), "0.3");
        assert_eq!(format_tick(-2.5e6, 4), "-2.5M");
        assert_eq!(format_tick(9.99999e-4, 4), "1e-3");
        assert_eq!(format_tick(10f64.powf(-2.0), 4), "0.01");
        assert_eq!(tick_labels(&[0.0, 0.5, 1.0]), ["0", "0.5", "1"]);
        let close = tick_labels(&[0.3101, 0.31015, 0.3102]);
        assert_eq!(close, ["0.3101", "0.31015", "0.3102"]);
        let ranges = [
            (0.0, 1.0),
            (-0.13, 7.3),
            (0.0, 1e4),
            (3.0, 3.5),
            (-1e-4, 2e-3),
        ];
        for (lo, hi) in ranges {
            let n = nice_ticks(lo, hi, 0.0).len();
            assert!((4..=8).contains(&n), "{lo}..{hi}: {n} ticks");
        }
    }

    #[test]
    fn rendering_is_deterministic() {
        let data = [series("a", &[(3, 2.0), (1, 1.0), (2, f64::NAN), (0, 0.5)])];
        let render_once = || render(&data, &PlotOptions::default()).unwrap();
        assert!(render_once() == render_once());
    }

    #[test]
    fn png_round_trip() {
        let data = [series("a", &[(0, 1.0), (10, 0.5)])];
        let png = encode_png(&render(&data, &opts(LogY::Auto, 320, 200)).unwrap()).unwrap();
        assert!(png.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]));
        let back = image::load_from_memory(&png).unwrap();
        assert_eq!((back.width(), back.height()), (320, 200));
    }
}
