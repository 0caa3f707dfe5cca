//! Frame and label-map types shared by every source, dataset and pipeline.

/// An RGB frame, 8 bits per channel, row-major HWC (what decoders produce).
pub type Frame = image::RgbImage;

/// A label map: one `u8` object or part id per pixel (0 = background).
pub type LabelMap = image::GrayImage;
