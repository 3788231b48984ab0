//! Opening and renaming the files a download writes (`NAME.part`, its record, the record's
//! temporary file) in a directory others may write to as well: a link planted at one of
//! these names must never make p2p write, truncate or replace the file it points to.
//!
//! Every open adds `O_NOFOLLOW` (a link at the path is an error, not followed), new files
//! are created exclusively (`O_CREAT | O_EXCL` refuses any existing path, links included),
//! and an existing file is used only once its open handle says it is a regular file. The
//! final rename never replaces a path that exists, unless asked to.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// `O_NOFOLLOW` as `OpenOptionsExt::custom_flags` takes it.
fn no_follow_flag() -> i32 {
    // The flag's bits fit an i32: open(2) takes them as an int.
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// Creates `path` for reading and writing; fails if anything (a file, a link) is there.
pub fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(no_follow_flag())
        .open(path)
}

/// Opens an existing regular file at `path` for reading and writing, without following a
/// link. The type is checked on the open handle, so it cannot change after the check.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(no_follow_flag())
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// A new file at `path`, or the regular file already there (`true`: it existed). A file
/// that appears between the two attempts is taken only if it is a regular file.
pub fn open_or_create(path: &Path) -> io::Result<(File, bool)> {
    match create_new(path) {
        Ok(file) => Ok((file, false)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok((open_regular(path)?, true)),
        Err(e) => Err(e),
    }
}

/// The whole of the file at `path`, read without following a link.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(no_follow_flag())
        .open(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Writes `bytes` to `path` atomically: a temporary file beside it (`PATH.tmp`), then a
/// rename. Neither name is written through a link: the temporary file is created
/// exclusively (one left by a crash, or a link, is removed first: removing a link leaves
/// its target alone), and the rename replaces a link at `path` itself, not its target.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut file = match create_new(&tmp) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(&tmp)?;
            create_new(&tmp)?
        }
        other => other?,
    };
    file.write_all(bytes)?;
    drop(file);
    fs::rename(&tmp, path)
}

/// `read`, refusing a file of more than `max` bytes (`InvalidData`) without reading it.
pub fn read_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(no_follow_flag())
        .open(path)?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(bytes)
}

/// Whether `path` itself is a symbolic link (not what it points to).
pub fn is_link(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink())
}

/// The message for a link found where p2p keeps a download's file: what happened, that the
/// target was left alone, and what to do.
pub fn link_refused(path: &Path) -> String {
    format!(
        "{} is a symbolic link; p2p does not write through links, and left its target untouched: remove the link (or choose another path with -o) and run again",
        path.display()
    )
}

/// Says why `path` could not be opened (`what`: "open", "create"), with the advice of
/// [`link_refused`] when the reason is a link at the path.
pub fn describe_open_error(path: &Path, what: &str, e: &io::Error) -> String {
    if is_link(path) {
        link_refused(path)
    } else {
        format!("cannot {what} {}: {e}", path.display())
    }
}

/// Renames `from` to `to`, failing with `AlreadyExists` if anything is at `to` (a file, a
/// directory, a link, even a dangling one).
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    // Linux's renameat2(RENAME_NOREPLACE) (macOS: renamex_np(RENAME_EXCL)) checks and
    // renames in one step, so a file that appears at `to` meanwhile is never replaced.
    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        use rustix::io::Errno;
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(()),
            // A kernel or file system without the flag (Linux before 3.15, some network
            // file systems): the check below.
            Err(e) if e == Errno::INVAL || e == Errno::NOSYS || e == Errno::NOTSUP => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Check, then rename: a file created at `to` in between would be replaced. Only where
    // the one-step rename is missing, and the window is one system call long.
    if fs::symlink_metadata(to).is_ok() {
        return Err(io::Error::from(io::ErrorKind::AlreadyExists));
    }
    fs::rename(from, to)
}

/// Whether [`open_beneath`] may create what is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    /// Open only what exists.
    No,
    /// Create missing directories on the way, and the file with this mode (before the
    /// umask).
    WithDirs { mode: u32 },
}

/// Opens the directory `root` itself, refusing a link there.
fn open_root(root: &Path) -> io::Result<rustix::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    Ok(rustix::fs::open(
        root,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Walks `components` from the directory `dir`, one `openat` each without following a
/// link, creating missing directories when asked.
fn walk_dirs<'a>(
    mut dir: rustix::fd::OwnedFd,
    components: impl Iterator<Item = &'a str>,
    create: bool,
) -> io::Result<rustix::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    for component in components {
        if create {
            match rustix::fs::mkdirat(&dir, component, Mode::from_raw_mode(0o777)) {
                Ok(()) => {}
                Err(e) if e == rustix::io::Errno::EXIST => {}
                Err(e) => return Err(e.into()),
            }
        }
        dir = rustix::fs::openat(
            &dir,
            component,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
    }
    Ok(dir)
}

/// The directory holding `relative` beneath `root` (walked without following links,
/// created on the way when asked), and the last component's name.
fn parent_beneath<'a>(
    root: &Path,
    relative: &'a str,
    create: bool,
) -> io::Result<(rustix::fd::OwnedFd, &'a str)> {
    let (parents, name) = match relative.rsplit_once('/') {
        Some((parents, name)) => (Some(parents), name),
        None => (None, relative),
    };
    let components = parents.into_iter().flat_map(|p| p.split('/'));
    Ok((walk_dirs(open_root(root)?, components, create)?, name))
}

/// Opens the regular file at `relative` (components joined by `/`, already sanitised)
/// beneath the directory `root`, for reading and (when it can be) writing. No component
/// is followed if it is a link, so nothing is ever opened outside `root` (a link on the
/// way fails with `ELOOP` or `ENOTDIR`); the type is checked on the open handle.
pub fn open_beneath(root: &Path, relative: &str, create: Create) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let (dir, name) = parent_beneath(root, relative, create != Create::No)?;
    let mut flags = OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let mut mode = Mode::empty();
    if let Create::WithDirs { mode: wanted } = create {
        flags |= OFlags::CREATE;
        mode = Mode::from_raw_mode(wanted);
    }
    // Read-write where allowed (a download's files), else read-only (a shared tree may
    // hold files its sharer can only read).
    let fd = match rustix::fs::openat(&dir, name, flags | OFlags::RDWR, mode) {
        Ok(fd) => fd,
        Err(e) if e == rustix::io::Errno::ACCESS && create == Create::No => {
            rustix::fs::openat(&dir, name, flags | OFlags::RDONLY, mode)?
        }
        Err(e) => return Err(e.into()),
    };
    let file = File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{relative} is not a regular file"),
        ));
    }
    Ok(file)
}

/// Creates the directory `relative` and its parents beneath `root`, following no link.
pub fn create_dirs_beneath(root: &Path, relative: &str) -> io::Result<()> {
    walk_dirs(open_root(root)?, relative.split('/'), true).map(drop)
}

/// Removes the file, or the empty directory when `dir`, at `relative` beneath `root`,
/// following no link on the way (a link at `relative` itself is removed, not followed).
pub fn remove_beneath(root: &Path, relative: &str, dir: bool) -> io::Result<()> {
    let (parent, name) = parent_beneath(root, relative, false)?;
    let flags = if dir {
        rustix::fs::AtFlags::REMOVEDIR
    } else {
        rustix::fs::AtFlags::empty()
    };
    Ok(rustix::fs::unlinkat(&parent, name, flags)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_link_is_never_opened_and_its_target_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, b"precious").unwrap();
        let link = dir.path().join("f.part");
        symlink(&target, &link).unwrap();
        assert!(create_new(&link).is_err());
        assert!(open_regular(&link).is_err());
        assert!(open_or_create(&link).is_err());
        assert!(read(&link).is_err());
        let message = describe_open_error(&link, "open", &open_regular(&link).unwrap_err());
        assert!(
            message.contains("symbolic link") && message.contains("remove"),
            "{message}"
        );
        assert_eq!(fs::read(&target).unwrap(), b"precious");
        // A dangling link is refused as well: creating the file would create the target.
        let dangling = dir.path().join("g.part");
        symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(open_or_create(&dangling).is_err());
        assert!(!dir.path().join("nowhere").exists());
    }

    #[test]
    fn open_or_create_takes_a_regular_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.part");
        let (_, existed) = open_or_create(&path).unwrap();
        assert!(!existed);
        let (_, existed) = open_or_create(&path).unwrap();
        assert!(existed);
        let sub = dir.path().join("d.part");
        fs::create_dir(&sub).unwrap();
        assert!(open_or_create(&sub).is_err());
    }

    #[test]
    fn rename_no_replace_keeps_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("f.part");
        let to = dir.path().join("f");
        fs::write(&from, b"new").unwrap();
        fs::write(&to, b"old").unwrap();
        let err = rename_no_replace(&from, &to).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&to).unwrap(), b"old");
        // Nor a dangling link.
        fs::remove_file(&to).unwrap();
        symlink(dir.path().join("nowhere"), &to).unwrap();
        assert!(rename_no_replace(&from, &to).is_err());
        fs::remove_file(&to).unwrap();
        rename_no_replace(&from, &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), b"new");
    }
}
