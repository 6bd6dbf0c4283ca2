//! Files that hold secrets or the subscriber list: folders are created
//! 0700 and files 0600, and a file that exists is never overwritten
//! unless the operator asked for it.

use std::path::Path;

/// Creates `dir` and its missing parents 0700 (the data directory holds
/// the secret and the subscriber list); an existing one is left as it is.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes `contents` to a new file at `path`, mode 0600; fails if the file
/// exists.
#[cfg(unix)]
pub(crate) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

/// Writes `contents` to a new file at `path`; fails if the file exists.
#[cfg(not(unix))]
pub(crate) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

/// [`write_private`], replacing an existing file when `force` (the new
/// contents go to a temporary file first, so a crash leaves the old one).
pub(crate) fn write_private_forced(
    path: &Path,
    contents: &str,
    force: bool,
) -> std::io::Result<()> {
    if !force {
        return write_private(path, contents);
    }
    let tmp = path.with_extension("tmp-letterpress");
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}
