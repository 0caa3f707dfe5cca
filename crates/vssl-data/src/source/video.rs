//! Video files decoded by FFmpeg (feature `video`).
//!
//! [`VideoSource`] uses the FFmpeg bindings that video-rs re-exports (`video_rs::ffmpeg`, i.e.
//! ffmpeg-next 9) directly, because it needs what video-rs's `Decoder` does not expose: the frame
//! index of every decoded frame, keyframe-aware seeking, frame-threaded decoding and a bilinear
//! swscale resize to RGB24 applied only to the frames that are kept.
//!
//! Opening a file runs one demux pass (packets only, no decoding). It gives the exact frame count
//! whatever the container header claims (a truncated file has fewer packets than its header says),
//! the presentation timestamp of every frame (so a decoded frame's index is known exactly, also
//! after a seek) and the keyframe positions (so a seek happens only when a keyframe lies between
//! the current position and the next wanted frame).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use video_rs::ffmpeg;

use ffmpeg::codec::threading;
use ffmpeg::format::Pixel;
use ffmpeg::media::Type as MediaType;
use ffmpeg::software::scaling;
use ffmpeg::util::frame::Video as AvFrame;
use ffmpeg::{Packet, Rational};

use super::FrameSource;
use super::folder::assemble;
use crate::frame::Frame;
use crate::{Error, Result};

/// Seek only when the keyframe before the wanted frame is more than this many frames ahead of the
/// decoder's position: below that, decoding forward costs less than a flush and a restart.
const SEEK_MIN_GAP: usize = 8;

/// Initialises FFmpeg once per process and silences its logging (bad inputs are reported through
/// our errors and [`crate::skip::SkipLog`], not by FFmpeg printing to stderr).
fn init_ffmpeg() -> Result<()> {
    static INIT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        ffmpeg::init().map_err(|e| e.to_string())?;
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Quiet);
        Ok(())
    })
    .clone()
    .map_err(|e| Error::op("init_ffmpeg", format!("FFmpeg failed to initialise: {e}")))
}

/// An swscale context, owned by one [`VideoSource`].
struct Scaler {
    ctx: scaling::Context,
    /// Input (format, width, height) the context was made for.
    input: (Pixel, u32, u32),
    /// Output (width, height).
    output: (u32, u32),
    /// Reused RGB24 output frame.
    out: AvFrame,
}

// SAFETY: an `SwsContext` has no thread affinity; it is only unsafe to use from two threads at
// once, and `Scaler` is owned by a single `VideoSource` whose methods take `&mut self`.
unsafe impl Send for Scaler {}

/// Per-file facts learned by the demux pass at open time.
#[derive(Debug, Clone)]
struct StreamIndex {
    /// Presentation timestamps of all frames, sorted (frame `i` has `pts[i]`); empty when some
    /// packet had no timestamp (then frames are identified by counting from the start).
    pts: Vec<i64>,
    /// Indices of the keyframes, sorted (only when `pts` is known).
    keyframes: Vec<usize>,
    /// Number of frames (video packets).
    count: usize,
}

/// A video file, decoded on demand by FFmpeg.
///
/// Frames are numbered in presentation order from 0. [`FrameSource::frames`] decodes forward from
/// the current position, seeks to a keyframe when the next wanted frame is far ahead, converts and
/// resizes (swscale, bilinear, RGB24) only the frames asked for, and keeps its position between
/// calls, so consecutive calls with increasing indices never decode a frame twice.
pub struct VideoSource {
    path: PathBuf,
    input: ffmpeg::format::context::Input,
    decoder: ffmpeg::decoder::Video,
    stream_index: usize,
    time_base: Rational,
    size: (u32, u32),
    fps: f64,
    threads: usize,
    index: StreamIndex,
    /// Index of the last frame the decoder returned (`None` before the first).
    last: Option<usize>,
    /// True once the decoder has been sent end-of-stream.
    draining: bool,
    /// True once the decoder has returned its last frame.
    exhausted: bool,
    /// Set when a seek landed after the frame it aimed at: seeking is then not trusted.
    seek_broken: bool,
    /// Why reading stopped early, if it did (an I/O error in a truncated file).
    read_error: Option<String>,
    scaler: Option<Scaler>,
    packet: Packet,
    frame: AvFrame,
    /// Frames the decoder has returned since open (kept or not).
    decoded: u64,
    /// Seeks done since open (rewinds included).
    seeks: u64,
}

impl std::fmt::Debug for VideoSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoSource")
            .field("path", &self.path)
            .field("frames", &self.index.count)
            .field("size", &self.size)
            .field("fps", &self.fps)
            .finish_non_exhaustive()
    }
}

/// Opens the container and a decoder for its best video stream.
fn open_decoder(
    path: &Path,
    threads: usize,
) -> Result<(
    ffmpeg::format::context::Input,
    ffmpeg::decoder::Video,
    usize,
)> {
    init_ffmpeg()?;
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::file(path, format!("cannot read the file: {e}")))?;
    if !meta.is_file() {
        return Err(Error::file(path, "not a regular file"));
    }
    if meta.len() == 0 {
        return Err(Error::file(path, "empty file (0 bytes)"));
    }
    let input = ffmpeg::format::input(path)
        .map_err(|e| Error::file(path, format!("not a readable video: {e}")))?;
    let stream = input
        .streams()
        .best(MediaType::Video)
        .ok_or_else(|| Error::file(path, "no video stream"))?;
    let stream_index = stream.index();
    let mut ctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| Error::file(path, format!("bad codec parameters: {e}")))?;
    ctx.set_threading(threading::Config {
        kind: threading::Type::Frame,
        count: threads,
        ..Default::default()
    });
    let decoder = ctx
        .decoder()
        .video()
        .map_err(|e| Error::file(path, format!("no decoder for the video stream: {e}")))?;
    if decoder.width() == 0 || decoder.height() == 0 || decoder.format() == Pixel::None {
        return Err(Error::file(
            path,
            "the video stream has no frame size or pixel format",
        ));
    }
    Ok((input, decoder, stream_index))
}

/// The demux pass: every video packet's timestamp and keyframe flag.
fn scan(
    input: &mut ffmpeg::format::context::Input,
    stream_index: usize,
    path: &Path,
) -> Result<StreamIndex> {
    let mut pts: Vec<i64> = Vec::new();
    let mut key_pts: Vec<i64> = Vec::new();
    let mut count = 0usize;
    let mut all_pts = true;
    let mut packet = Packet::empty();
    loop {
        match packet.read(input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) => continue,
            // An I/O error (a truncated file): the packets read so far are all there is.
            Err(_) => break,
        }
        if packet.stream() != stream_index || packet.size() == 0 {
            continue;
        }
        count += 1;
        match packet.pts() {
            Some(p) if all_pts => {
                pts.push(p);
                if packet.is_key() {
                    key_pts.push(p);
                }
            }
            _ => all_pts = false,
        }
    }
    if count == 0 {
        return Err(Error::file(path, "the video stream has no frame"));
    }
    if !all_pts {
        return Ok(StreamIndex {
            pts: Vec::new(),
            keyframes: Vec::new(),
            count,
        });
    }
    pts.sort_unstable();
    pts.dedup();
    if pts.len() != count {
        // Repeated timestamps: they cannot identify frames.
        return Ok(StreamIndex {
            pts: Vec::new(),
            keyframes: Vec::new(),
            count,
        });
    }
    let mut keyframes: Vec<usize> = key_pts
        .iter()
        .filter_map(|p| pts.binary_search(p).ok())
        .collect();
    keyframes.sort_unstable();
    keyframes.dedup();
    Ok(StreamIndex {
        pts,
        keyframes,
        count,
    })
}

impl VideoSource {
    /// Opens `path` with FFmpeg's automatic number of decoding threads.
    ///
    /// Fails with [`Error::File`] naming the file when it is missing, empty, not a video (garbage
    /// bytes, a text file with a video extension), has no decodable video stream, or no frame.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_threads(path, 0)
    }

    /// Opens `path` decoding with `threads` frame threads (0: FFmpeg chooses, usually one per
    /// core). Data loaders that run one source per worker thread should pass 1.
    pub fn open_with_threads(path: impl AsRef<Path>, threads: usize) -> Result<Self> {
        let path = path.as_ref();
        let (mut input, decoder, stream_index) = open_decoder(path, threads)?;
        let (time_base, rate) = {
            let stream = input
                .stream(stream_index)
                .ok_or_else(|| Error::file(path, "the video stream vanished"))?;
            let avg = stream.avg_frame_rate();
            let rate = if avg.numerator() > 0 && avg.denominator() > 0 {
                avg
            } else {
                stream.rate()
            };
            (stream.time_base(), rate)
        };
        let fps = if rate.numerator() > 0 && rate.denominator() > 0 {
            f64::from(rate.numerator()) / f64::from(rate.denominator())
        } else {
            0.0
        };
        let index = scan(&mut input, stream_index, path)?;
        let size = (decoder.width(), decoder.height());
        let mut source = Self {
            path: path.to_path_buf(),
            input,
            decoder,
            stream_index,
            time_base,
            size,
            fps,
            threads,
            index,
            last: None,
            draining: false,
            exhausted: false,
            seek_broken: false,
            read_error: None,
            scaler: None,
            packet: Packet::empty(),
            frame: AvFrame::empty(),
            decoded: 0,
            seeks: 0,
        };
        source.rewind()?;
        source.seeks = 0;
        Ok(source)
    }

    /// The file this source reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Frames per second (the stream's average rate; 0 when the container does not say).
    pub fn fps(&self) -> f64 {
        self.fps
    }

    /// Indices of the keyframes found by the demux pass (empty when the stream has no usable
    /// timestamps: then the source never seeks and decodes from the start).
    pub fn keyframes(&self) -> &[usize] {
        &self.index.keyframes
    }

    /// Frames the decoder has produced since the file was opened, kept or skipped: a measure of
    /// the work done (sparse requests on a file with frequent keyframes decode far fewer frames
    /// than the highest index asked).
    pub fn frames_decoded(&self) -> u64 {
        self.decoded
    }

    /// Seeks and rewinds done since the file was opened.
    pub fn seeks(&self) -> u64 {
        self.seeks
    }

    /// Back to the first frame: reopens the container and a fresh decoder (used after the demux
    /// pass, to go backwards, and when a seek misbehaves).
    fn rewind(&mut self) -> Result<()> {
        let (input, decoder, stream_index) = open_decoder(&self.path, self.threads)?;
        self.seeks += 1;
        self.input = input;
        self.decoder = decoder;
        self.stream_index = stream_index;
        self.last = None;
        self.draining = false;
        self.exhausted = false;
        self.read_error = None;
        Ok(())
    }

    /// Seeks so that the next decoded frame is keyframe `key` (or an earlier frame).
    fn seek_to_keyframe(&mut self, key: usize) -> Result<()> {
        let Some(&pts) = self.index.pts.get(key) else {
            return self.rewind();
        };
        // `Input::seek` takes AV_TIME_BASE (microsecond) units; round down so that the limit is
        // not after the keyframe.
        let tb = self.time_base;
        let us = i128::from(pts) * i128::from(tb.numerator()) * 1_000_000;
        let den = i128::from(tb.denominator().max(1));
        let ts = i64::try_from(us.div_euclid(den)).unwrap_or(i64::MIN);
        match self.input.seek(ts, ..ts.saturating_add(1)) {
            Ok(()) => {
                self.seeks += 1;
                self.decoder.flush();
                self.last = None;
                self.draining = false;
                self.exhausted = false;
                self.read_error = None;
                Ok(())
            }
            Err(_) => {
                self.seek_broken = true;
                self.rewind()
            }
        }
    }

    /// Index of the frame now in `self.frame`.
    fn frame_index(&self) -> Option<usize> {
        if !self.index.pts.is_empty()
            && let Some(ts) = self.frame.timestamp()
            && let Ok(i) = self.index.pts.binary_search(&ts)
        {
            return Some(i);
        }
        match self.last {
            Some(l) => Some(l + 1),
            // After a rewind the first frame is frame 0; after a seek a frame without a known
            // timestamp cannot be placed.
            None if self.index.pts.is_empty() => Some(0),
            None => None,
        }
    }

    /// Decodes the next frame into `self.frame` and returns its index, or `None` at the end.
    fn next_frame(&mut self) -> Option<usize> {
        loop {
            if self.exhausted {
                return None;
            }
            match self.decoder.receive_frame(&mut self.frame) {
                Ok(()) => {
                    self.decoded += 1;
                    let idx = self.frame_index();
                    if let Some(i) = idx {
                        self.last = Some(i);
                        return Some(i);
                    }
                    // An unplaceable frame after a seek: skip it.
                    continue;
                }
                Err(ffmpeg::Error::Eof) => {
                    self.exhausted = true;
                    return None;
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {}
                // A decoding error on one frame: it is dropped, keep going.
                Err(_) if !self.draining => {}
                Err(_) => {
                    self.exhausted = true;
                    return None;
                }
            }
            if self.draining {
                // EAGAIN while draining should not happen; stop rather than loop.
                self.exhausted = true;
                return None;
            }
            // Feed one packet of our stream (or end-of-stream).
            loop {
                match self.packet.read(&mut self.input) {
                    Ok(()) => {
                        if self.packet.stream() != self.stream_index {
                            continue;
                        }
                        // A corrupt packet is dropped; the decoder resynchronises.
                        let _ = self.decoder.send_packet(&self.packet);
                        break;
                    }
                    Err(ffmpeg::Error::InvalidData) => continue,
                    Err(e) => {
                        if !matches!(e, ffmpeg::Error::Eof) {
                            self.read_error = Some(e.to_string());
                        }
                        let _ = self.decoder.send_eof();
                        self.draining = true;
                        break;
                    }
                }
            }
        }
    }

    /// Converts `self.frame` to RGB24 at `out_size` (bilinear swscale) into a [`Frame`].
    fn convert(&mut self, out_size: (u32, u32)) -> Result<Frame> {
        let input = (self.frame.format(), self.frame.width(), self.frame.height());
        let reuse = self
            .scaler
            .as_ref()
            .is_some_and(|s| s.input == input && s.output == out_size);
        if !reuse {
            let ctx = scaling::Context::get(
                input.0,
                input.1,
                input.2,
                Pixel::RGB24,
                out_size.0,
                out_size.1,
                scaling::Flags::BILINEAR,
            )
            .map_err(|e| {
                Error::file(
                    &self.path,
                    format!(
                        "cannot convert {:?} {}x{} frames to RGB {}x{}: {e}",
                        input.0, input.1, input.2, out_size.0, out_size.1
                    ),
                )
            })?;
            self.scaler = Some(Scaler {
                ctx,
                input,
                output: out_size,
                out: AvFrame::empty(),
            });
        }
        let path = &self.path;
        let scaler = self
            .scaler
            .as_mut()
            .ok_or_else(|| Error::file(path, "no scaler"))?;
        scaler
            .ctx
            .run(&self.frame, &mut scaler.out)
            .map_err(|e| Error::file(path, format!("frame conversion failed: {e}")))?;
        let (w, h) = (out_size.0 as usize, out_size.1 as usize);
        let row = w * 3;
        let stride = scaler.out.stride(0);
        let data = scaler.out.data(0);
        let mut buf = Vec::with_capacity(row * h);
        if stride == row {
            buf.extend_from_slice(&data[..row * h]);
        } else {
            for y in 0..h {
                buf.extend_from_slice(&data[y * stride..y * stride + row]);
            }
        }
        Frame::from_raw(out_size.0, out_size.1, buf)
            .ok_or_else(|| Error::file(path, "converted frame has the wrong size"))
    }
}

impl FrameSource for VideoSource {
    fn len(&self) -> usize {
        self.index.count
    }

    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn frames(&mut self, indices: &[usize], resize: Option<(u32, u32)>) -> Result<Vec<Frame>> {
        let n = self.index.count;
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(Error::op(
                "VideoSource::frames",
                format!(
                    "{}: frame {bad} asked, the video has {n}",
                    self.path.display()
                ),
            ));
        }
        if let Some((w, h)) = resize
            && (w == 0 || h == 0)
        {
            return Err(Error::op(
                "VideoSource::frames",
                format!("{}: resize to {w}x{h}", self.path.display()),
            ));
        }
        let out_size = resize.unwrap_or(self.size);
        let mut wanted: Vec<usize> = indices.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let mut got: Vec<Option<Frame>> = vec![None; wanted.len()];

        for (slot, &target) in wanted.iter().enumerate() {
            // Where the decoder is: the next frame it will return.
            let next = self.last.map_or(0, |l| l + 1);
            let key = if self.seek_broken {
                None
            } else {
                match self.index.keyframes.partition_point(|&k| k <= target) {
                    0 => None,
                    p => Some(self.index.keyframes[p - 1]),
                }
            };
            let restarted = if target < next {
                // Behind us: restart from the nearest keyframe, or from the top.
                match key {
                    Some(k) if k > 0 => self.seek_to_keyframe(k)?,
                    _ => self.rewind()?,
                }
                true
            } else if let Some(k) = key
                && k > next + SEEK_MIN_GAP
            {
                self.seek_to_keyframe(k)?;
                true
            } else {
                false
            };
            let mut first = restarted;
            let found = loop {
                let Some(i) = self.next_frame() else {
                    break false;
                };
                if first && i > target && !self.seek_broken {
                    // The seek overshot: stop trusting seeks, decode from the start.
                    self.seek_broken = true;
                    self.rewind()?;
                    first = false;
                    continue;
                }
                first = false;
                if i == target {
                    break true;
                }
                if i > target {
                    // The wanted frame was dropped by the decoder.
                    break false;
                }
            };
            if !found {
                let reason = match &self.read_error {
                    Some(e) => format!("read error: {e}"),
                    None => "the decoder gave no such frame".to_string(),
                };
                return Err(Error::file(
                    &self.path,
                    format!(
                        "frame {target} of {n} could not be decoded ({reason}); the file may be \
                         truncated or corrupt"
                    ),
                ));
            }
            got[slot] = Some(self.convert(out_size)?);
        }

        assemble(indices, &wanted, got, &self.path)
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}
