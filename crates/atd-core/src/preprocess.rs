//! Turning any image file into the model input: decode (PNG, JPEG, WebP, GIF, BMP; any size,
//! grayscale, alpha, 16-bit), composite transparency over white, center-crop to a square on the
//! short side, area-resize to 32x32, and lay out as CHW f32 in [0, 1].

use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::{IMAGE_SIZE, IMAGE_VALUES};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("empty file: no image data")]
    Empty,
    #[error("not a supported image (PNG, JPEG, WebP, GIF or BMP): {0}")]
    Unsupported(String),
    #[error("could not decode the image: {0}")]
    Decode(String),
    #[error(
        "the image is {width}x{height} pixels, {} MiB decoded; the limit is {} pixels a side and {} MiB",
        bytes >> 20, MAX_SIDE, MAX_DECODED_BYTES >> 20
    )]
    TooLarge { width: u32, height: u32, bytes: u64 },
}

/// Longest side accepted by the decoder; larger files are rejected rather than exhausting memory.
pub const MAX_SIDE: u32 = 16_384;
/// Memory budget of a decoded image (its declared size, checked before anything is allocated);
/// preprocessing needs little more (it converts one row at a time).
pub const MAX_DECODED_BYTES: u64 = 256 << 20;

/// Largest image file read, as large as the decoded budget (files of the images that fit in it
/// are far smaller).
pub const MAX_IMAGE_FILE_BYTES: u64 = MAX_DECODED_BYTES;

/// Read an image file's bytes, refusing one over `MAX_IMAGE_FILE_BYTES` before reading it.
pub fn read_image_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    crate::file::read_limited(path, MAX_IMAGE_FILE_BYTES, "image file")
}

/// Decode image bytes of any supported format.
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageError::Decode(e.to_string()))?;
    if reader.format().is_none() {
        return Err(ImageError::Unsupported("unknown file signature".into()));
    }
    // Sides are checked below, with the numbers in the error; the allocation cap also covers
    // what decoders allocate while reading headers.
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    reader.limits(limits);
    let error = |e: image::ImageError| match e {
        image::ImageError::Unsupported(u) => ImageError::Unsupported(u.to_string()),
        other => ImageError::Decode(other.to_string()),
    };
    // The header's declared size, before any pixel buffer exists.
    let decoder = reader.into_decoder().map_err(error)?;
    let ((width, height), bytes) = (decoder.dimensions(), decoder.total_bytes());
    if width > MAX_SIDE || height > MAX_SIDE || bytes > MAX_DECODED_BYTES {
        return Err(ImageError::TooLarge { width, height, bytes });
    }
    DynamicImage::from_decoder(decoder).map_err(error)
}

/// Decode and preprocess in one step.
pub fn image_to_input(bytes: &[u8]) -> Result<Vec<f32>, ImageError> {
    Ok(to_input(&decode(bytes)?))
}

/// Preprocess a decoded image into a CHW [0,1] 3x32x32 input: the centered square crop,
/// composited over white, area-averaged. Rows are converted to floats one at a time, so a large
/// photo needs no more memory than its decoded pixels.
pub fn to_input(img: &DynamicImage) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let side = w.min(h);
    let (x0, y0) = ((w - side) / 2, (h - side) / 2);
    let n = IMAGE_SIZE;
    let weights = area_weights(side, n);
    // Horizontal pass per source row of the crop (composited over white, so transparent regions
    // have a defined colour), then the vertical pass over those rows.
    let mut horizontal = vec![[0f32; 3]; side * n];
    for y in 0..side {
        let row = img.crop_imm(x0 as u32, (y0 + y) as u32, side as u32, 1).to_rgba32f();
        let composited: Vec<[f32; 3]> = row
            .pixels()
            .map(|p| {
                let a = p.0[3].clamp(0.0, 1.0);
                [0, 1, 2].map(|c| p.0[c].clamp(0.0, 1.0) * a + (1.0 - a))
            })
            .collect();
        for (ox, taps) in weights.iter().enumerate() {
            horizontal[y * n + ox] = [0, 1, 2].map(|c| taps.iter().map(|&(i, w)| composited[i][c] * w).sum());
        }
    }
    let mut out = vec![0f32; IMAGE_VALUES];
    for (oy, taps) in weights.iter().enumerate() {
        for ox in 0..n {
            for c in 0..3 {
                let v: f32 = taps.iter().map(|&(i, w)| horizontal[i * n + ox][c] * w).sum();
                // Weighted sums of values in [0,1] can round a hair outside it.
                out[c * n * n + oy * n + ox] = v.clamp(0.0, 1.0);
            }
        }
    }
    out
}

/// For each of `n` output cells, the source indices it overlaps and their normalised weights.
fn area_weights(src: usize, n: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = src as f64 / n as f64;
    (0..n)
        .map(|o| {
            let (start, end) = (o as f64 * scale, (o + 1) as f64 * scale);
            let mut taps = Vec::new();
            let mut i = start.floor() as usize;
            while (i as f64) < end && i < src {
                let overlap = (end.min(i as f64 + 1.0) - start.max(i as f64)).max(0.0);
                if overlap > 0.0 {
                    taps.push((i, (overlap / scale) as f32));
                }
                i += 1;
            }
            taps
        })
        .collect()
}

/// Convert a CHW [0,1] input back to interleaved RGB bytes (rounded), e.g. to write a PNG.
pub fn input_to_rgb8(input: &[f32]) -> Vec<u8> {
    let hw = IMAGE_SIZE * IMAGE_SIZE;
    assert_eq!(input.len(), 3 * hw, "a 3x32x32 input");
    (0..hw).flat_map(|i| (0..3).map(move |c| (input[c * hw + i].clamp(0.0, 1.0) * 255.0).round() as u8)).collect()
}

/// Quantise an adversarial input to bytes without leaving the eps-ball: each value moves from
/// its clean byte towards the adversarial value by whole 1/255 steps, rounded towards the clean
/// byte, so |result - clean| <= |adversarial - clean| holds exactly. Both are CHW.
pub fn quantize_towards_clean(clean: &[u8], adversarial: &[f32]) -> Vec<u8> {
    assert_eq!(clean.len(), adversarial.len(), "one adversarial value per clean byte");
    clean
        .iter()
        .zip(adversarial)
        .map(|(&c, &a)| (c as f32 + (a.clamp(0.0, 1.0) * 255.0 - c as f32).trunc()).clamp(0.0, 255.0) as u8)
        .collect()
}

/// CHW bytes of a model input (3x32x32, the CIFAR record layout) as a PNG file: what the CLI
/// writes, the page downloads and the page's CIFAR samples are.
pub fn chw_bytes_to_png(chw: &[u8]) -> Result<Vec<u8>, ImageError> {
    if chw.len() != IMAGE_VALUES {
        return Err(ImageError::Decode(format!("expected {IMAGE_VALUES} CHW bytes (3x32x32), got {}", chw.len())));
    }
    let rgb = input_to_rgb8(&chw_bytes_to_input(chw));
    let img = image::RgbImage::from_raw(IMAGE_SIZE as u32, IMAGE_SIZE as u32, rgb).expect("3x32x32 values");
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| ImageError::Decode(e.to_string()))?;
    Ok(png)
}

/// Convert CHW [0,1] values to CHW bytes, rounded.
pub fn input_to_chw_bytes(input: &[f32]) -> Vec<u8> {
    input.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect()
}

/// Convert CHW bytes (the CIFAR record layout) to a CHW [0,1] input.
pub fn chw_bytes_to_input(bytes: &[u8]) -> Vec<f32> {
    bytes.iter().map(|&b| b as f32 / 255.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trip_keeps_every_byte_and_wrong_sizes_are_errors() {
        let chw: Vec<u8> = (0..IMAGE_VALUES).map(|i| (i * 7 % 256) as u8).collect();
        let png = chw_bytes_to_png(&chw).unwrap();
        assert_eq!(input_to_chw_bytes(&image_to_input(&png).unwrap()), chw);
        let err = chw_bytes_to_png(&chw[1..]).unwrap_err().to_string();
        assert!(err.contains("3072") && err.contains("3071"), "{err}");
    }

    #[test]
    fn quantisation_never_leaves_the_eps_ball() {
        let clean: Vec<u8> = (0..=255).collect();
        for eps_levels in [1u8, 4, 8] {
            let eps = eps_levels as f32 / 255.0;
            let adversarial: Vec<f32> = clean
                .iter()
                .enumerate()
                .map(|(i, &c)| (c as f32 / 255.0 + eps * [1.0, -1.0, 0.37, -0.99][i % 4]).clamp(0.0, 1.0))
                .collect();
            let q = quantize_towards_clean(&clean, &adversarial);
            for i in 0..clean.len() {
                let moved = (q[i] as f32 - clean[i] as f32).abs();
                assert!(moved <= eps_levels as f32, "value {i}: moved {moved} levels at eps {eps_levels}/255");
                assert!((q[i] as f32 / 255.0 - adversarial[i]).abs() < 1.0 / 255.0 + 1e-6);
            }
        }
    }
    use image::{ImageBuffer, ImageFormat, Luma, LumaA, Rgb, Rgba};

    fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    fn assert_valid(input: &[f32]) {
        assert_eq!(input.len(), IMAGE_VALUES);
        assert!(input.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn one_pixel_image_fills_the_input() {
        let img = DynamicImage::ImageRgb8(ImageBuffer::from_pixel(1, 1, Rgb([255, 0, 51])));
        let x = image_to_input(&encode(img, ImageFormat::Png)).unwrap();
        assert_valid(&x);
        let hw = IMAGE_SIZE * IMAGE_SIZE;
        assert!(x[..hw].iter().all(|&v| v == 1.0));
        assert!(x[hw..2 * hw].iter().all(|&v| v == 0.0));
        assert!(x[2 * hw..].iter().all(|&v| (v - 0.2).abs() < 1e-6));
    }

    #[test]
    fn wide_image_is_center_cropped_then_area_averaged() {
        // 4000x300: left and right thirds black, the middle 300 columns hold a left-white /
        // right-black split, so the crop is exactly that window and the output splits at 16.
        let img = ImageBuffer::from_fn(4000, 300, |x, _| {
            let v = if (1850..2000).contains(&x) { 255u8 } else { 0 };
            Rgb([v, v, v])
        });
        let x = image_to_input(&encode(DynamicImage::ImageRgb8(img), ImageFormat::Png)).unwrap();
        assert_valid(&x);
        for col in 0..IMAGE_SIZE {
            let v = x[5 * IMAGE_SIZE + col];
            assert_eq!(v, if col < 16 { 1.0 } else { 0.0 }, "column {col}");
        }
    }

    #[test]
    fn area_resize_averages_with_fractional_weights() {
        // 3 -> 2: output 0 covers source [0, 1.5), output 1 covers [1.5, 3).
        let w = area_weights(3, 2);
        assert_eq!(w[0], vec![(0, 2.0 / 3.0), (1, 1.0 / 3.0)]);
        assert_eq!(w[1], vec![(1, 1.0 / 3.0), (2, 2.0 / 3.0)]);
        // 48 -> 32 (the same 3 -> 2 weights, repeated) on columns 0, 0.3, 0.9, 0, 0.3, 0.9, ...
        let columns = [0.0f32, 0.3, 0.9];
        let img = ImageBuffer::from_fn(48, 48, |x, _| image::Rgb([columns[x as usize % 3]; 3]));
        let out = to_input(&DynamicImage::ImageRgb32F(img));
        for c in 0..3 {
            for (k, expected) in [0.1, 0.7].into_iter().cycle().take(IMAGE_SIZE).enumerate() {
                let v = out[c * IMAGE_SIZE * IMAGE_SIZE + 7 * IMAGE_SIZE + k];
                assert!((v - expected).abs() < 1e-6, "channel {c} column {k}: {v}");
            }
        }
    }

    #[test]
    fn grayscale_alpha_and_sixteen_bit() {
        let gray = DynamicImage::ImageLuma8(ImageBuffer::from_pixel(40, 40, Luma([128u8])));
        let x = image_to_input(&encode(gray, ImageFormat::Png)).unwrap();
        assert!(x.iter().all(|&v| (v - 128.0 / 255.0).abs() < 1e-6));

        // Fully transparent pixels become white; half-transparent black becomes mid grey.
        let la =
            DynamicImage::ImageLumaA8(ImageBuffer::from_fn(32, 32, |x, _| LumaA([0u8, if x < 16 { 0 } else { 255 }])));
        let x = image_to_input(&encode(la, ImageFormat::Png)).unwrap();
        assert_eq!((x[0], x[20]), (1.0, 0.0));
        let half = DynamicImage::ImageRgba8(ImageBuffer::from_pixel(8, 8, Rgba([0u8, 0, 0, 128])));
        let x = image_to_input(&encode(half, ImageFormat::Png)).unwrap();
        assert!((x[0] - (1.0 - 128.0 / 255.0)).abs() < 1e-6);

        let deep = DynamicImage::ImageRgb16(ImageBuffer::from_pixel(33, 31, Rgb([65535u16, 32768, 0])));
        let x = image_to_input(&encode(deep, ImageFormat::Png)).unwrap();
        assert_valid(&x);
        assert_eq!(x[0], 1.0);
        assert!((x[IMAGE_SIZE * IMAGE_SIZE] - 32768.0 / 65535.0).abs() < 1e-6);
    }

    #[test]
    fn every_supported_format_decodes() {
        let img = DynamicImage::ImageRgb8(ImageBuffer::from_fn(50, 20, |x, y| Rgb([x as u8 * 5, y as u8 * 10, 7])));
        for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Gif, ImageFormat::Bmp, ImageFormat::WebP] {
            let bytes = encode(img.clone(), format);
            assert_valid(&image_to_input(&bytes).unwrap_or_else(|e| panic!("{format:?}: {e}")));
        }
    }

    #[test]
    fn bad_files_are_clear_errors() {
        assert!(matches!(image_to_input(b""), Err(ImageError::Empty)));
        assert!(matches!(image_to_input(b"hello, this is text"), Err(ImageError::Unsupported(_))));
        let png = encode(DynamicImage::ImageRgb8(ImageBuffer::from_pixel(64, 64, Rgb([1u8, 2, 3]))), ImageFormat::Png);
        let err = image_to_input(&png[..png.len() / 2]).unwrap_err();
        assert!(matches!(err, ImageError::Decode(_)), "{err}");
    }

    #[test]
    fn images_too_large_to_decode_are_refused_from_their_header() {
        use crate::zip::crc32;
        // A PNG header declaring 16000 x 16000 RGBA (1000 MiB decoded), with no pixel data.
        let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13];
        let ihdr: Vec<u8> = [&b"IHDR"[..], &16000u32.to_be_bytes(), &16000u32.to_be_bytes(), &[8, 6, 0, 0, 0]].concat();
        png.extend(&ihdr);
        png.extend(crc32(&ihdr).to_be_bytes());
        let empty_chunk = |name: &[u8]| [&[0u8; 4][..], name, &crc32(name).to_be_bytes()].concat();
        png.extend(empty_chunk(b"IDAT"));
        png.extend(empty_chunk(b"IEND"));
        let err = image_to_input(&png).unwrap_err();
        assert!(matches!(err, ImageError::TooLarge { width: 16000, height: 16000, .. }), "{err}");
        assert!(err.to_string().contains("256 MiB"), "{err}");
        // Over the side limit.
        let wide: Vec<u8> = [&b"IHDR"[..], &20000u32.to_be_bytes(), &8u32.to_be_bytes(), &[8, 2, 0, 0, 0]].concat();
        let mut png = png[..12].to_vec();
        png.extend(&wide);
        png.extend(crc32(&wide).to_be_bytes());
        png.extend(empty_chunk(b"IDAT"));
        png.extend(empty_chunk(b"IEND"));
        let err = image_to_input(&png).unwrap_err().to_string();
        assert!(err.contains("20000x8") && err.contains("16384"), "{err}");
    }

    #[test]
    fn round_trip_to_bytes() {
        let bytes: Vec<u8> = (0..IMAGE_VALUES).map(|i| (i % 256) as u8).collect();
        let x = chw_bytes_to_input(&bytes);
        let rgb = input_to_rgb8(&x);
        assert_eq!(rgb[0], bytes[0]);
        assert_eq!(rgb[1], bytes[IMAGE_SIZE * IMAGE_SIZE]);
        assert_eq!(rgb[5], bytes[2 * IMAGE_SIZE * IMAGE_SIZE + 1]);
    }
}
