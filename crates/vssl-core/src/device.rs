//! Device selection from a user-facing string (`cpu`, `cuda:N`, `metal`).

use candle_core::Device;

use crate::{Error, Result};

/// Parses `cpu`, `cuda`, `cuda:N`, `metal` or `metal:N` into a candle [`Device`].
///
/// A backend that this build lacks is a clear error naming the cargo feature to enable, never a
/// silent fall-back to the CPU.
pub fn parse_device(spec: &str) -> Result<Device> {
    let spec = spec.trim();
    let (kind, ordinal) = match spec.split_once(':') {
        Some((k, n)) => {
            let n: usize = n
                .parse()
                .map_err(|_| Error::op("device", format!("bad device ordinal in {spec:?}")))?;
            (k, n)
        }
        None => (spec, 0),
    };
    match kind {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if cfg!(feature = "cuda") {
                Ok(Device::new_cuda(ordinal)?)
            } else {
                Err(Error::op(
                    "device",
                    format!(
                        "{spec:?} needs a build with the `cuda` feature (cargo build --features cuda)"
                    ),
                ))
            }
        }
        "metal" => {
            if cfg!(feature = "metal") {
                Ok(Device::new_metal(ordinal)?)
            } else {
                Err(Error::op(
                    "device",
                    format!(
                        "{spec:?} needs a build with the `metal` feature (cargo build --features metal)"
                    ),
                ))
            }
        }
        other => Err(Error::op(
            "device",
            format!("unknown device {other:?}: use cpu, cuda:N or metal"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_rejects_unknown() {
        assert!(parse_device("cpu").is_ok_and(|d| d.is_cpu()));
        let err = parse_device("tpu:0").unwrap_err().to_string();
        assert!(err.contains("unknown device"), "{err}");
        let err = parse_device("cuda:x").unwrap_err().to_string();
        assert!(err.contains("ordinal"), "{err}");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_names_the_feature() {
        let err = parse_device("cuda:0").unwrap_err().to_string();
        assert!(err.contains("`cuda` feature"), "{err}");
    }
}
