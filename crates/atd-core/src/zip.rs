//! A minimal ZIP reader (stored and deflated entries, CRC-checked), enough for ImageFolder
//! archives without pulling a general archive library into a crate that also targets wasm.

use std::fmt;

/// Largest entry this reader inflates: ImageFolder entries are image files, and a larger
/// declared size (a decompression bomb, or corruption) is refused before any allocation.
pub const MAX_ENTRY_BYTES: usize = 64 << 20;

pub struct Entry {
    pub name: String,
    method: u16,
    crc32: u32,
    compressed_size: usize,
    uncompressed_size: usize,
    local_header_offset: usize,
}

#[derive(Debug)]
pub struct ZipError(pub String);

impl fmt::Display for ZipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// List the file entries (directories skipped) from the central directory.
pub fn entries(archive: &[u8]) -> Result<Vec<Entry>, ZipError> {
    const EOCD: u32 = 0x0605_4b50;
    const CENTRAL: u32 = 0x0201_4b50;
    let search_from = archive.len().saturating_sub(22 + 65_535);
    let eocd = (search_from..archive.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(archive, i) == Some(EOCD))
        .ok_or_else(|| ZipError("no end-of-central-directory record: not a ZIP file, or truncated".into()))?;
    let count = u16_at(archive, eocd + 10).unwrap() as usize;
    let mut at = u32_at(archive, eocd + 16).unwrap() as usize;
    let mut out = Vec::with_capacity(count);
    for index in 0..count {
        let bad = || ZipError(format!("central directory entry {index} is truncated or corrupt"));
        if u32_at(archive, at) != Some(CENTRAL) {
            return Err(bad());
        }
        let field16 = |o| u16_at(archive, at + o).ok_or_else(bad);
        let field32 = |o| u32_at(archive, at + o).ok_or_else(bad);
        let (name_len, extra_len, comment_len) = (field16(28)? as usize, field16(30)? as usize, field16(32)? as usize);
        let name_bytes = archive.get(at + 46..at + 46 + name_len).ok_or_else(bad)?;
        let entry = Entry {
            name: String::from_utf8_lossy(name_bytes).into_owned(),
            method: field16(10)?,
            crc32: field32(16)?,
            compressed_size: field32(20)? as usize,
            uncompressed_size: field32(24)? as usize,
            local_header_offset: field32(42)? as usize,
        };
        if !entry.name.ends_with('/') {
            out.push(entry);
        }
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(out)
}

/// The uncompressed, CRC-verified bytes of one entry.
pub fn read(archive: &[u8], entry: &Entry) -> Result<Vec<u8>, ZipError> {
    let err = |what: &str| ZipError(format!("entry {:?}: {what}", entry.name));
    if entry.uncompressed_size > MAX_ENTRY_BYTES {
        let mib = |b: usize| b >> 20;
        return Err(err(&format!(
            "declares {} MiB uncompressed; the limit is {} MiB per entry",
            mib(entry.uncompressed_size),
            mib(MAX_ENTRY_BYTES)
        )));
    }
    let at = entry.local_header_offset;
    if u32_at(archive, at) != Some(0x0403_4b50) {
        return Err(err("local header missing (archive truncated or corrupt)"));
    }
    let start =
        at + 30 + u16_at(archive, at + 26).unwrap_or(0) as usize + u16_at(archive, at + 28).unwrap_or(0) as usize;
    let raw = archive
        .get(start..start + entry.compressed_size)
        .ok_or_else(|| err("data runs past the end of the archive (truncated)"))?;
    let data = match entry.method {
        0 => raw.to_vec(),
        8 => miniz_oxide::inflate::decompress_to_vec_with_limit(raw, entry.uncompressed_size)
            .map_err(|e| err(&format!("deflate data is corrupt ({e:?})")))?,
        m => return Err(err(&format!("compression method {m} is not supported (only stored and deflate)"))),
    };
    if data.len() != entry.uncompressed_size || crc32(&data) != entry.crc32 {
        return Err(err("CRC or size mismatch: the entry is corrupt"));
    }
    Ok(data)
}

pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Build a ZIP of stored entries (for tests of the readers).
    pub fn stored_zip(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data) in files {
            let offset = out.len() as u32;
            let head = |sig: u32, central: bool| {
                let mut h = sig.to_le_bytes().to_vec();
                if central {
                    h.extend(20u16.to_le_bytes());
                }
                h.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // version, flags, method 0, time, date
                h.extend(crc32(data).to_le_bytes());
                h.extend((data.len() as u32).to_le_bytes());
                h.extend((data.len() as u32).to_le_bytes());
                h.extend((name.len() as u16).to_le_bytes());
                h.extend(0u16.to_le_bytes());
                if central {
                    h.extend([0u8; 8]); // comment len, disk, internal attrs, external attrs (low)
                    h.extend([0u8; 2]);
                    h.extend(offset.to_le_bytes());
                }
                h.extend(name.as_bytes());
                h
            };
            out.extend(head(0x0403_4b50, false));
            out.extend(*data);
            central.extend(head(0x0201_4b50, true));
        }
        let cd_offset = out.len() as u32;
        out.extend(&central);
        out.extend(0x0605_4b50u32.to_le_bytes());
        out.extend([0u8; 4]);
        out.extend((files.len() as u16).to_le_bytes());
        out.extend((files.len() as u16).to_le_bytes());
        out.extend((central.len() as u32).to_le_bytes());
        out.extend(cd_offset.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }

    #[test]
    fn reads_back_what_was_stored_and_detects_corruption() {
        let zip = stored_zip(&[("a/x.txt", b"hello"), ("b/y.txt", b"world!")]);
        let list = entries(&zip).unwrap();
        assert_eq!(list.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["a/x.txt", "b/y.txt"]);
        assert_eq!(read(&zip, &list[1]).unwrap(), b"world!");
        let mut corrupt = zip.clone();
        corrupt[30 + 7] ^= 1; // first byte of a/x.txt's data
        let err = read(&corrupt, &entries(&corrupt).unwrap()[0]).unwrap_err().to_string();
        assert!(err.contains("a/x.txt") && err.contains("CRC"), "{err}");
        assert!(entries(&zip[..zip.len() - 30]).is_err());
        // An entry declaring more than the limit is refused before inflating anything.
        let mut list = entries(&zip).unwrap();
        list[0].uncompressed_size = MAX_ENTRY_BYTES + 1;
        let err = read(&zip, &list[0]).unwrap_err().to_string();
        assert!(err.contains("a/x.txt") && err.contains("limit is 64 MiB"), "{err}");
    }

    #[test]
    fn crc_of_known_string() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
