//! Reading whole files under a stated memory budget.

use std::io::Read;
use std::path::Path;

/// Read all of `path`, refusing a file over `limit` bytes before its contents are read: the
/// size is checked first, and the read stops one byte past the limit (for pipes and devices,
/// whose size is not known in advance). `what` names the kind of file in the error.
pub fn read_limited(path: &Path, limit: u64, what: &str) -> std::io::Result<Vec<u8>> {
    let too_large = |size: u64| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the {what} is {} MiB, over the limit of {} MiB for a {what}", size.div_ceil(1 << 20), limit >> 20),
        )
    };
    let file = std::fs::File::open(path)?;
    let declared = file.metadata()?.len();
    if declared > limit {
        return Err(too_large(declared));
    }
    let mut bytes = Vec::with_capacity(declared as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_over_the_limit_are_refused_with_the_limit_named() {
        let path = std::env::temp_dir().join(format!("atd-read-limited-{}", std::process::id()));
        std::fs::write(&path, vec![7u8; 3 << 20]).unwrap();
        assert_eq!(read_limited(&path, 3 << 20, "test file").unwrap().len(), 3 << 20);
        let err = read_limited(&path, 2 << 20, "test file").unwrap_err().to_string();
        assert!(err.contains("3 MiB") && err.contains("limit of 2 MiB for a test file"), "{err}");
        std::fs::remove_file(&path).unwrap();
        // A device of unknown size: the read stops past the limit.
        let err = read_limited(Path::new("/dev/zero"), 1 << 20, "test file").unwrap_err().to_string();
        assert!(err.contains("limit of 1 MiB"), "{err}");
    }
}
