//! Dataset readers: CIFAR binary records and ImageFolder trees (a folder or a ZIP). Images are
//! held as CHW u8 at 32x32; labels as u16. A truncated or corrupt file is an error that names
//! the file and the record or entry.

use std::path::{Path, PathBuf};

use crate::{IMAGE_VALUES, preprocess, zip};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

fn invalid(path: &Path, message: impl Into<String>) -> DataError {
    DataError::Invalid { path: path.to_path_buf(), message: message.into() }
}

/// Largest data file (CIFAR records, an ImageFolder ZIP, one image of a folder) read into
/// memory; CIFAR-10's training records are 150 MiB.
pub const MAX_DATA_FILE_BYTES: u64 = 4 << 30;

fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    crate::file::read_limited(path, MAX_DATA_FILE_BYTES, "data file")
        .map_err(|source| DataError::Io { path: path.to_path_buf(), source })
}

/// A set of 32x32 RGB images (CHW bytes, one image after the other) with labels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageSet {
    pub pixels: Vec<u8>,
    pub labels: Vec<u16>,
    pub class_names: Vec<String>,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// CHW bytes of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * IMAGE_VALUES..(i + 1) * IMAGE_VALUES]
    }

    /// Add `other`'s images after these (labels kept as they are; class names from `self`).
    pub fn append(&mut self, other: ImageSet) {
        self.pixels.extend(other.pixels);
        self.labels.extend(other.labels);
    }

    /// The images whose label passes `keep`, in order.
    pub fn subset(&self, keep: impl Fn(u16) -> bool) -> Self {
        let idx: Vec<usize> = (0..self.len()).filter(|&i| keep(self.labels[i])).collect();
        Self {
            pixels: idx.iter().flat_map(|&i| self.image(i).iter().copied()).collect(),
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            class_names: self.class_names.clone(),
        }
    }

    /// The first `n` images (or all of them).
    pub fn truncated(mut self, n: usize) -> Self {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.pixels.truncate(n * IMAGE_VALUES);
        self
    }
}

/// How many label bytes precede each CIFAR record: one (CIFAR-10 and this data pack) or two
/// (CIFAR-100: coarse then fine; the fine label is kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelBytes {
    One,
    Two,
}

/// Read a CIFAR binary file: records of label byte(s) then 3x32x32 CHW pixel bytes.
pub fn read_cifar_bin(path: &Path, label_bytes: LabelBytes) -> Result<ImageSet, DataError> {
    let bytes = read_file(path)?;
    parse_cifar_bin(path, &bytes, label_bytes)
}

/// Parse CIFAR records already in memory; `path` names the source in errors.
pub fn parse_cifar_bin(path: &Path, bytes: &[u8], label_bytes: LabelBytes) -> Result<ImageSet, DataError> {
    let lb = match label_bytes {
        LabelBytes::One => 1,
        LabelBytes::Two => 2,
    };
    let record = lb + IMAGE_VALUES;
    if bytes.is_empty() {
        return Err(invalid(path, "empty file: no CIFAR records"));
    }
    if !bytes.len().is_multiple_of(record) {
        let whole = bytes.len() / record;
        return Err(invalid(
            path,
            format!(
                "{} bytes is not a whole number of {record}-byte records: record {whole} is truncated ({} of {record} bytes)",
                bytes.len(),
                bytes.len() % record
            ),
        ));
    }
    let n = bytes.len() / record;
    let mut set =
        ImageSet { pixels: Vec::with_capacity(n * IMAGE_VALUES), labels: Vec::with_capacity(n), class_names: vec![] };
    for r in bytes.chunks_exact(record) {
        set.labels.push(r[lb - 1] as u16);
        set.pixels.extend_from_slice(&r[lb..]);
    }
    Ok(set)
}

/// Read an ImageFolder tree `<class>/<image>` from a directory or a `.zip` file. Classes are the
/// sorted top-level folder names; images of any size and format are preprocessed to 32x32.
/// `on_image` is called after each decoded image (for progress bars).
pub fn read_image_folder(path: &Path, on_image: impl FnMut(usize, usize)) -> Result<ImageSet, DataError> {
    if !path.is_dir() {
        return parse_image_folder_zip(path, &read_file(path)?, on_image);
    }
    let mut files: Vec<(String, String, usize)> = Vec::new(); // (class, file path, unused index)
    for class_dir in std::fs::read_dir(path).map_err(|source| DataError::Io { path: path.into(), source })? {
        let class_dir = class_dir.map_err(|source| DataError::Io { path: path.into(), source })?.path();
        if !class_dir.is_dir() {
            continue;
        }
        let class = class_dir.file_name().unwrap().to_string_lossy().into_owned();
        for f in std::fs::read_dir(&class_dir).map_err(|source| DataError::Io { path: class_dir.clone(), source })? {
            let f = f.map_err(|source| DataError::Io { path: class_dir.clone(), source })?.path();
            if f.is_file() {
                files.push((class.clone(), f.to_string_lossy().into_owned(), 0));
            }
        }
    }
    decode_folder(path, files, |key, _| read_file(Path::new(key)), on_image)
}

/// An ImageFolder ZIP already in memory (`<class>/<image>` entries); `path` names it in errors.
pub fn parse_image_folder_zip(
    path: &Path,
    bytes: &[u8],
    on_image: impl FnMut(usize, usize),
) -> Result<ImageSet, DataError> {
    let list = zip::entries(bytes).map_err(|e| invalid(path, e.to_string()))?;
    let mut files = Vec::new(); // (class, entry name, entry index)
    for (index, e) in list.iter().enumerate() {
        if let Some((class, rest)) = e.name.split_once('/')
            && !rest.is_empty()
            && !rest.contains('/')
        {
            files.push((class.to_string(), e.name.clone(), index));
        }
    }
    decode_folder(
        path,
        files,
        |_, index| zip::read(bytes, &list[index]).map_err(|e| invalid(path, e.to_string())),
        on_image,
    )
}

/// Decode the listed `(class, key, index)` files (read by `read`) into a set, in sorted order.
fn decode_folder(
    path: &Path,
    mut files: Vec<(String, String, usize)>,
    read: impl Fn(&str, usize) -> Result<Vec<u8>, DataError>,
    mut on_image: impl FnMut(usize, usize),
) -> Result<ImageSet, DataError> {
    files.sort();
    if files.is_empty() {
        return Err(invalid(path, "no images found in <class>/<image> layout"));
    }
    let mut class_names: Vec<String> = files.iter().map(|(c, _, _)| c.clone()).collect();
    class_names.dedup();
    if class_names.len() > u16::MAX as usize + 1 {
        return Err(invalid(path, format!("{} classes; labels are 16-bit, so at most 65536", class_names.len())));
    }
    let mut set = ImageSet { pixels: Vec::with_capacity(files.len() * IMAGE_VALUES), labels: vec![], class_names };
    for (i, (class, key, index)) in files.iter().enumerate() {
        let bytes = read(key, *index)?;
        let input = preprocess::image_to_input(&bytes).map_err(|e| invalid(path, format!("entry {key:?}: {e}")))?;
        set.pixels.extend(input.iter().map(|v| (v * 255.0).round() as u8));
        set.labels.push(set.class_names.binary_search(class).expect("class listed") as u16);
        on_image(i + 1, files.len());
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zip::tests::stored_zip;

    fn record(label: u8, fill: u8) -> Vec<u8> {
        let mut r = vec![label];
        r.extend(std::iter::repeat_n(fill, IMAGE_VALUES));
        r
    }

    #[test]
    fn cifar_records_parse_and_truncation_is_named() {
        let mut bytes = record(3, 7);
        bytes.extend(record(9, 200));
        let set = parse_cifar_bin(Path::new("x.bin"), &bytes, LabelBytes::One).unwrap();
        assert_eq!(set.labels, vec![3, 9]);
        assert_eq!(set.image(1)[0], 200);
        let err =
            parse_cifar_bin(Path::new("x.bin"), &bytes[..bytes.len() - 1], LabelBytes::One).unwrap_err().to_string();
        assert!(err.contains("x.bin") && err.contains("record 1 is truncated"), "{err}");
        assert!(parse_cifar_bin(Path::new("e.bin"), &[], LabelBytes::One).unwrap_err().to_string().contains("empty"));
        // Two label bytes: the fine (second) label is kept.
        let mut two = vec![1u8, 42];
        two.extend(std::iter::repeat_n(5, IMAGE_VALUES));
        assert_eq!(parse_cifar_bin(Path::new("c100.bin"), &two, LabelBytes::Two).unwrap().labels, vec![42]);
    }

    fn png(r: u8) -> Vec<u8> {
        let img = image::DynamicImage::ImageRgb8(image::ImageBuffer::from_pixel(40, 50, image::Rgb([r, 0, 0])));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn image_folder_from_zip_and_dir() {
        let (a, b) = (png(10), png(250));
        let zip = stored_zip(&[("cat/1.png", &a), ("ant/1.png", &b), ("ant/2.png", &a)]);
        let dir = std::env::temp_dir().join(format!("atd-folder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let zip_path = dir.join("set.zip");
        std::fs::write(&zip_path, &zip).unwrap();
        let mut calls = 0;
        let set = read_image_folder(&zip_path, |_, _| calls += 1).unwrap();
        assert_eq!(
            (set.class_names.clone(), set.labels.clone(), calls),
            (vec!["ant".into(), "cat".into()], vec![0, 0, 1], 3)
        );
        assert_eq!(set.image(0)[0], 250);

        let tree = dir.join("tree");
        for (class, name, bytes) in [("cat", "1.png", &a), ("ant", "1.png", &b), ("ant", "2.png", &a)] {
            std::fs::create_dir_all(tree.join(class)).unwrap();
            std::fs::write(tree.join(class).join(name), bytes).unwrap();
        }
        assert_eq!(read_image_folder(&tree, |_, _| {}).unwrap(), set);

        // A corrupt entry is named.
        let bad = stored_zip(&[("cat/1.png", &a), ("cat/broken.png", &a[..a.len() / 3])]);
        std::fs::write(&zip_path, &bad).unwrap();
        let err = read_image_folder(&zip_path, |_, _| {}).unwrap_err().to_string();
        assert!(err.contains("set.zip") && err.contains("cat/broken.png"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
