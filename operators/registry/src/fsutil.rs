//! Durable file operations: every state change is write-temp + fsync + rename + fsync(dir).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// fsync a directory so that a rename or create inside it survives a power cut.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Create (or truncate) `path`, write `bytes`, fsync the file.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Copy `src` to `dst` (which must not exist) and fsync `dst`.
pub(crate) fn copy_synced(src: &Path, dst: &Path) -> io::Result<()> {
    let mut from = File::open(src)?;
    let mut to = OpenOptions::new().write(true).create_new(true).open(dst)?;
    io::copy(&mut from, &mut to)?;
    to.sync_all()
}

/// fsync every directory under and including `dir`, deepest first.
pub(crate) fn sync_tree_dirs(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree_dirs(&entry.path())?;
        }
    }
    sync_dir(dir)
}

/// Remove `path` whether it is a file, a symlink or a directory tree; absent is fine.
pub(crate) fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
