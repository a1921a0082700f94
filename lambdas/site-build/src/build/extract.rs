//! Unpacking a source tarball into a work directory, refusing anything that
//! could write or point outside it.
//!
//! The archive comes from the network, so every entry is checked before it
//! touches the disk:
//! - all entries sit under one top-level folder (GitHub names it
//!   `{owner}-{repo}-{short sha}`), which is stripped;
//! - no absolute paths and no `..` components;
//! - only directories, regular files and symlinks (no hard links, devices,
//!   FIFOs);
//! - a symlink's target is relative and stays inside the tree, also when
//!   it goes through another symlink of the archive;
//! - the decompressed stream is capped, so a gzip bomb stops at the cap.
//!
//! Symlinks are created last, after every file and directory: nothing of
//! the archive is ever written through a link, so a link cannot redirect a
//! later entry. An entry inside a path the archive also declares as a link
//! is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tar::EntryType;

/// What [`extract`] refused or failed on. The caller adds the repository
/// and commit.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the archive is larger than {limit} bytes unpacked")]
    TooLarge { limit: u64 },
    #[error("cannot read the archive: {0}")]
    Read(#[source] io::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("entry {entry:?} refused: {reason}")]
    Unsafe { entry: String, reason: &'static str },
    #[error("entries {first:?} and {other:?} are under different top-level folders; a source archive has exactly one")]
    SeveralTopLevels { first: String, other: String },
    #[error("the archive holds no files")]
    Empty,
}

/// What [`extract`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Extracted {
    /// The stripped top-level folder's name.
    pub(crate) top_level: String,
    /// The commit `git archive` recorded in the archive's global header
    /// (GitHub's tarballs carry it), if any.
    pub(crate) commit: Option<String>,
    pub(crate) files: usize,
    pub(crate) symlinks: usize,
    /// Bytes of file content written.
    pub(crate) bytes: u64,
}

/// Unpacks the gzip-compressed tar `compressed` into `root`, an existing
/// empty directory, reading at most `max_bytes` of decompressed data.
/// Blocking: run it off the async workers.
pub(crate) fn extract(
    compressed: impl Read,
    root: &Path,
    max_bytes: u64,
) -> Result<Extracted, ArchiveError> {
    let exceeded = Arc::new(AtomicBool::new(false));
    let capped = Capped {
        inner: flate2::read::GzDecoder::new(compressed),
        remaining: max_bytes,
        exceeded: exceeded.clone(),
    };
    let too_large = |error: ArchiveError| {
        if exceeded.load(Ordering::SeqCst) {
            ArchiveError::TooLarge { limit: max_bytes }
        } else {
            error
        }
    };
    let mut archive = tar::Archive::new(capped);
    let mut unpacker = Unpacker::new(root);
    let entries = archive.entries().map_err(ArchiveError::Read)?;
    for entry in entries {
        let entry = entry.map_err(|e| too_large(ArchiveError::Read(e)))?;
        unpacker.entry(entry).map_err(too_large)?;
    }
    // Reads to the end, so the gzip trailer's checksum is verified too.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| too_large(ArchiveError::Read(e)))?;
    unpacker.finish()
}

/// A reader that fails once more than `remaining` bytes went through it.
struct Capped<R> {
    inner: R,
    remaining: u64,
    exceeded: Arc<AtomicBool>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match self.remaining.checked_sub(n as u64) {
            Some(left) => {
                self.remaining = left;
                Ok(n)
            }
            None => {
                self.exceeded.store(true, Ordering::SeqCst);
                Err(io::Error::new(
                    io::ErrorKind::FileTooLarge,
                    "the archive exceeds its size cap",
                ))
            }
        }
    }
}

struct Unpacker<'a> {
    root: &'a Path,
    top_level: Option<String>,
    commit: Option<String>,
    /// Symlinks, created at the end: path in the tree -> target.
    symlinks: BTreeMap<PathBuf, PathBuf>,
    /// Every file and directory written, to catch entries under a link.
    written: BTreeSet<PathBuf>,
    files: usize,
    bytes: u64,
}

impl<'a> Unpacker<'a> {
    fn new(root: &'a Path) -> Self {
        Self {
            root,
            top_level: None,
            commit: None,
            symlinks: BTreeMap::new(),
            written: BTreeSet::new(),
            files: 0,
            bytes: 0,
        }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), ArchiveError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            self.read_global_header(&mut entry)?;
            return Ok(());
        }
        let raw = entry.path().map_err(ArchiveError::Read)?.into_owned();
        let shown = raw.display().to_string();
        let Some(relative) = self.strip_top_level(&raw, &shown)? else {
            return Ok(());
        };
        let unsafe_entry = |reason| ArchiveError::Unsafe {
            entry: shown.clone(),
            reason,
        };
        match kind {
            EntryType::Directory => {
                let path = self.root.join(&relative);
                std::fs::create_dir_all(&path).map_err(|source| ArchiveError::Write {
                    path: path.clone(),
                    source,
                })?;
                self.written.insert(relative);
            }
            EntryType::Regular | EntryType::Continuous => {
                let path = self.root.join(&relative);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|source| ArchiveError::Write {
                        path: parent.to_path_buf(),
                        source,
                    })?;
                }
                // Keep only "executable or not": an archive sets no setuid
                // bits or world-writable files here.
                let executable = entry.header().mode().map(|m| m & 0o111 != 0);
                let mode = if executable.unwrap_or(false) {
                    0o755
                } else {
                    0o644
                };
                let write = |source| ArchiveError::Write {
                    path: path.clone(),
                    source,
                };
                let mut file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(mode)
                    .open(&path)
                    .map_err(write)?;
                let copied = copy_entry(&mut entry, &mut file).map_err(|error| match error {
                    CopyError::Read(source) => ArchiveError::Read(source),
                    CopyError::Write(source) => write(source),
                })?;
                self.files += 1;
                self.bytes += copied;
                self.written.insert(relative);
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(ArchiveError::Read)?
                    .ok_or_else(|| unsafe_entry("a symlink without a target"))?
                    .into_owned();
                if target.as_os_str().is_empty() {
                    return Err(unsafe_entry("a symlink without a target"));
                }
                if target.is_absolute() {
                    return Err(unsafe_entry("a symlink to an absolute path"));
                }
                self.symlinks.insert(relative, target);
            }
            EntryType::Link => return Err(unsafe_entry("hard links are not supported")),
            _ => {
                return Err(unsafe_entry(
                    "only files, directories and symlinks are allowed",
                ))
            }
        }
        Ok(())
    }

    /// `git archive` writes the commit id as the global header's comment.
    fn read_global_header<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), ArchiveError> {
        let Some(extensions) = entry.pax_extensions().map_err(ArchiveError::Read)? else {
            return Ok(());
        };
        for extension in extensions {
            let extension = extension.map_err(ArchiveError::Read)?;
            if extension.key() == Ok("comment") {
                if let Ok(value) = extension.value() {
                    let value = value.trim();
                    if (value.len() == 40 || value.len() == 64)
                        && value.bytes().all(|b| b.is_ascii_hexdigit())
                    {
                        self.commit = Some(value.to_ascii_lowercase());
                    }
                }
            }
        }
        Ok(())
    }

    /// The entry's path below the top-level folder, checked component by
    /// component; `None` for the top-level folder itself.
    fn strip_top_level(
        &mut self,
        raw: &Path,
        shown: &str,
    ) -> Result<Option<PathBuf>, ArchiveError> {
        let unsafe_entry = |reason| ArchiveError::Unsafe {
            entry: shown.to_owned(),
            reason,
        };
        let mut parts = Vec::new();
        for component in raw.components() {
            match component {
                Component::Normal(part) => parts.push(part),
                Component::CurDir => {}
                Component::ParentDir => return Err(unsafe_entry("a \"..\" path component")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(unsafe_entry("an absolute path"))
                }
            }
        }
        let Some((top, rest)) = parts.split_first() else {
            return Err(unsafe_entry("an empty path"));
        };
        let top = top.to_string_lossy();
        match &self.top_level {
            None => self.top_level = Some(top.into_owned()),
            Some(first) if *first == top => {}
            Some(first) => {
                return Err(ArchiveError::SeveralTopLevels {
                    first: first.clone(),
                    other: shown.to_owned(),
                })
            }
        }
        if rest.is_empty() {
            return Ok(None);
        }
        Ok(Some(rest.iter().collect()))
    }

    /// Checks every symlink against the whole tree, then creates them.
    fn finish(self) -> Result<Extracted, ArchiveError> {
        let top_level = self.top_level.ok_or(ArchiveError::Empty)?;
        if self.files == 0 && self.symlinks.is_empty() {
            return Err(ArchiveError::Empty);
        }
        for link in self.symlinks.keys() {
            if let Some(inside) = self
                .written
                .iter()
                .chain(self.symlinks.keys())
                .find(|path| *path != link && path.starts_with(link))
            {
                return Err(ArchiveError::Unsafe {
                    entry: inside.display().to_string(),
                    reason: "it lies under a path the archive declares as a symlink",
                });
            }
        }
        for (link, target) in &self.symlinks {
            if let Err(reason) = resolve_inside(link, target, &self.symlinks) {
                return Err(ArchiveError::Unsafe {
                    entry: format!("{} -> {}", link.display(), target.display()),
                    reason,
                });
            }
        }
        for (link, target) in &self.symlinks {
            let path = self.root.join(link);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| ArchiveError::Write {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            std::os::unix::fs::symlink(target, &path)
                .map_err(|source| ArchiveError::Write { path, source })?;
        }
        Ok(Extracted {
            top_level,
            commit: self.commit,
            files: self.files,
            symlinks: self.symlinks.len(),
            bytes: self.bytes,
        })
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// `io::copy`, telling the archive's read errors from the disk's write
/// errors.
fn copy_entry(from: &mut impl Read, to: &mut impl Write) -> Result<u64, CopyError> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut copied = 0;
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        to.write_all(&buffer[..n]).map_err(CopyError::Write)?;
        copied += n as u64;
    }
}

/// Follows `link`'s `target` through the tree as the kernel would, with
/// the archive's own symlinks substituted along the way, and fails if any
/// step leaves the tree. Resolving lexically alone is not enough: with
/// `up -> .` and `out -> up/..`, `out` looks like the root but is its
/// parent.
fn resolve_inside(
    link: &Path,
    target: &Path,
    symlinks: &BTreeMap<PathBuf, PathBuf>,
) -> Result<(), &'static str> {
    /// More substitutions than any honest tree needs; a loop ends here.
    const MAX_HOPS: usize = 40;

    // Components still to walk, in reverse order, and where we are.
    let mut pending: Vec<PathBuf> = Vec::new();
    let mut at: Vec<PathBuf> = link
        .parent()
        .map(|p| {
            p.components()
                .map(|c| PathBuf::from(c.as_os_str()))
                .collect()
        })
        .unwrap_or_default();
    push_components(&mut pending, target)?;
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        if part.as_os_str() == ".." {
            if at.pop().is_none() {
                return Err("a symlink that points outside the source tree");
            }
            continue;
        }
        at.push(part);
        let here: PathBuf = at.iter().collect();
        if let Some(next) = symlinks.get(&here) {
            hops += 1;
            if hops > MAX_HOPS {
                return Err("a symlink loop");
            }
            at.pop();
            push_components(&mut pending, next)?;
        }
    }
    Ok(())
}

/// Pushes `path`'s components onto `pending` so the first pops first.
fn push_components(pending: &mut Vec<PathBuf>, path: &Path) -> Result<(), &'static str> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(PathBuf::from(part)),
            Component::ParentDir => parts.push(PathBuf::from("..")),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err("a symlink to an absolute path")
            }
        }
    }
    pending.extend(parts.into_iter().rev());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use flate2::write::GzEncoder;
    use flate2::Compression;

    /// One entry of a test archive; paths are written raw, so tests can
    /// build archives the `tar` crate's safe API would refuse to write.
    enum Item<'a> {
        Dir(&'a str),
        File(&'a str, &'a [u8], u32),
        Link(&'a str, &'a str),
        HardLink(&'a str, &'a str),
        Fifo(&'a str),
    }

    fn header(path: &str, kind: EntryType, size: u64, mode: u32) -> tar::Header {
        let mut header = tar::Header::new_ustar();
        let name = &mut header.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(mode);
        header.set_mtime(0);
        header
    }

    fn archive(items: &[Item<'_>]) -> Vec<u8> {
        archive_with_comment(items, None)
    }

    fn archive_with_comment(items: &[Item<'_>], comment: Option<&str>) -> Vec<u8> {
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        if let Some(comment) = comment {
            let record = format!("comment={comment}\n");
            let record = format!("{} {record}", record.len() + 3);
            let mut h = header(
                "pax_global_header",
                EntryType::XGlobalHeader,
                record.len() as u64,
                0o644,
            );
            h.set_cksum();
            builder.append(&h, record.as_bytes()).unwrap();
        }
        for item in items {
            let (mut h, data): (tar::Header, &[u8]) = match item {
                Item::Dir(path) => (header(path, EntryType::Directory, 0, 0o755), &[]),
                Item::File(path, data, mode) => (
                    header(path, EntryType::Regular, data.len() as u64, *mode),
                    data,
                ),
                Item::Link(path, target) => {
                    let mut h = header(path, EntryType::Symlink, 0, 0o777);
                    h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
                    (h, &[])
                }
                Item::HardLink(path, target) => {
                    let mut h = header(path, EntryType::Link, 0, 0o644);
                    h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
                    (h, &[])
                }
                Item::Fifo(path) => (header(path, EntryType::Fifo, 0, 0o644), &[]),
            };
            h.set_cksum();
            builder.append(&h, data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn unpack(items: &[Item<'_>]) -> (tempdir::Dir, Result<Extracted, ArchiveError>) {
        let dir = tempdir::Dir::new();
        let result = extract(&archive(items)[..], &dir.path(), 1 << 20);
        (dir, result)
    }

    fn refused(result: Result<Extracted, ArchiveError>) -> (String, &'static str) {
        match result {
            Err(ArchiveError::Unsafe { entry, reason }) => (entry, reason),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// A directory under the system temp dir, removed on drop.
    mod tempdir {
        use std::path::{Path, PathBuf};
        use std::sync::atomic::{AtomicUsize, Ordering};

        pub(super) struct Dir(PathBuf);

        impl Dir {
            pub(super) fn new() -> Self {
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                let path = std::env::temp_dir().join(format!(
                    "site-build-extract-{}-{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::SeqCst)
                ));
                let _ = std::fs::remove_dir_all(&path);
                std::fs::create_dir_all(path.join("tree")).unwrap();
                Self(path)
            }

            /// The tree; its parent is where an escape would land.
            pub(super) fn path(&self) -> PathBuf {
                self.0.join("tree")
            }

            pub(super) fn outside(&self) -> &Path {
                &self.0
            }
        }

        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn the_top_level_folder_is_stripped_and_modes_kept_to_executable_or_not() {
        let (dir, result) = unpack(&[
            Item::Dir("acme-site-1a2b3c4/"),
            Item::File("acme-site-1a2b3c4/package.json", b"{}", 0o644),
            Item::Dir("acme-site-1a2b3c4/src/"),
            Item::File("acme-site-1a2b3c4/src/index.html", b"<h1>hi</h1>", 0o4777),
            Item::File("acme-site-1a2b3c4/run.sh", b"#!/bin/sh\n", 0o755),
            Item::Link("acme-site-1a2b3c4/src/home.html", "index.html"),
        ]);
        let extracted = result.unwrap();
        assert_eq!(extracted.top_level, "acme-site-1a2b3c4");
        assert_eq!(extracted.files, 3);
        assert_eq!(extracted.symlinks, 1);
        assert_eq!(extracted.bytes, 2 + 11 + 10);
        let root = dir.path();
        assert_eq!(std::fs::read(root.join("package.json")).unwrap(), b"{}");
        assert_eq!(
            std::fs::read_to_string(root.join("src/home.html")).unwrap(),
            "<h1>hi</h1>"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| {
            std::fs::metadata(root.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("run.sh"), 0o755);
        // No setuid or world-writable bits survive.
        assert_eq!(mode("src/index.html"), 0o755);
        assert_eq!(mode("package.json"), 0o644);
    }

    #[test]
    fn the_commit_from_git_archives_global_header_is_read() {
        let sha = "0123456789ABCDEF0123456789abcdef01234567";
        let bytes = archive_with_comment(&[Item::File("x-1/a.txt", b"a", 0o644)], Some(sha));
        let dir = tempdir::Dir::new();
        let extracted = extract(&bytes[..], &dir.path(), 1 << 20).unwrap();
        assert_eq!(
            extracted.commit.as_deref(),
            Some(&*sha.to_ascii_lowercase())
        );
    }

    #[test]
    fn parent_dir_components_are_refused() {
        for path in ["x-1/../evil", "../evil", "x-1/a/../../evil"] {
            let (dir, result) = unpack(&[Item::File(path, b"pwned", 0o644)]);
            let (entry, reason) = refused(result);
            assert_eq!(entry, path);
            assert!(reason.contains(".."), "{reason}");
            assert!(!dir.outside().join("evil").exists());
        }
    }

    #[test]
    fn absolute_paths_are_refused() {
        let (_dir, result) = unpack(&[Item::File("/tmp/evil", b"pwned", 0o644)]);
        assert_eq!(refused(result).1, "an absolute path");
    }

    #[test]
    fn symlinks_that_leave_the_tree_are_refused() {
        for target in ["../../etc/passwd", "/etc/passwd", "a/../../.."] {
            let (_dir, result) = unpack(&[
                Item::File("x-1/index.html", b"hi", 0o644),
                Item::Link("x-1/leak", target),
            ]);
            let (entry, _) = refused(result);
            assert!(entry.contains("leak"), "{entry}");
        }
    }

    #[test]
    fn a_symlink_escaping_through_another_symlink_is_refused() {
        // `out` looks like the root lexically; through `up` it is the parent.
        let (dir, result) = unpack(&[
            Item::File("x-1/index.html", b"hi", 0o644),
            Item::Link("x-1/up", "."),
            Item::Link("x-1/out", "up/.."),
        ]);
        let (entry, reason) = refused(result);
        assert_eq!(entry, "out -> up/..");
        assert!(reason.contains("outside"), "{reason}");
        assert!(std::fs::symlink_metadata(dir.path().join("out")).is_err());
    }

    #[test]
    fn symlinks_that_stay_inside_are_kept_and_loops_refused() {
        let (dir, result) = unpack(&[
            Item::File("x-1/a/b/file.txt", b"hi", 0o644),
            Item::Link("x-1/deep", "a/b"),
            Item::Link("x-1/a/b/up", "../../a"),
            Item::Link("x-1/chained", "deep/file.txt"),
        ]);
        result.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("chained")).unwrap(),
            "hi"
        );
        let (_dir, result) = unpack(&[
            Item::File("x-1/f", b"hi", 0o644),
            Item::Link("x-1/ping", "pong"),
            Item::Link("x-1/pong", "ping"),
        ]);
        assert_eq!(refused(result).1, "a symlink loop");
    }

    #[test]
    fn entries_under_a_symlink_are_refused_whatever_their_order() {
        let (dir, result) = unpack(&[
            Item::Link("x-1/dist", ".."),
            Item::File("x-1/dist/evil", b"pwned", 0o644),
        ]);
        let (entry, _) = refused(result);
        assert_eq!(entry, "dist/evil");
        assert!(!dir.outside().join("evil").exists());

        let (_dir, result) = unpack(&[
            Item::File("x-1/dist/evil", b"pwned", 0o644),
            Item::Link("x-1/dist", "sub"),
        ]);
        refused(result);
    }

    #[test]
    fn hard_links_and_special_files_are_refused() {
        let (_dir, result) = unpack(&[
            Item::File("x-1/a", b"a", 0o644),
            Item::HardLink("x-1/b", "/etc/passwd"),
        ]);
        assert_eq!(refused(result).1, "hard links are not supported");
        let (_dir, result) = unpack(&[Item::Fifo("x-1/pipe")]);
        assert_eq!(
            refused(result).1,
            "only files, directories and symlinks are allowed"
        );
    }

    #[test]
    fn more_than_one_top_level_folder_is_refused() {
        let (_dir, result) = unpack(&[
            Item::File("x-1/a", b"a", 0o644),
            Item::File("y-2/b", b"b", 0o644),
        ]);
        assert!(
            matches!(result, Err(ArchiveError::SeveralTopLevels { ref first, ref other }) if first == "x-1" && other == "y-2/b"),
            "{result:?}"
        );
    }

    #[test]
    fn an_archive_over_the_cap_stops_at_the_cap() {
        // Compresses to almost nothing; unpacked it is 4 MiB.
        let zeros = vec![0u8; 4 << 20];
        let bytes = archive(&[Item::File("x-1/bomb", &zeros, 0o644)]);
        assert!(bytes.len() < 64 << 10);
        let dir = tempdir::Dir::new();
        let result = extract(&bytes[..], &dir.path(), 1 << 20);
        assert!(
            matches!(result, Err(ArchiveError::TooLarge { limit }) if limit == 1 << 20),
            "{result:?}"
        );
    }

    #[test]
    fn corrupt_or_empty_archives_are_errors() {
        let dir = tempdir::Dir::new();
        let result = extract(&b"not gzip at all"[..], &dir.path(), 1 << 20);
        assert!(matches!(result, Err(ArchiveError::Read(_))), "{result:?}");

        let mut truncated = archive(&[Item::File("x-1/a", &[7u8; 10_000], 0o644)]);
        truncated.truncate(truncated.len() / 2);
        let dir = tempdir::Dir::new();
        let result = extract(&truncated[..], &dir.path(), 1 << 20);
        assert!(matches!(result, Err(ArchiveError::Read(_))), "{result:?}");

        let (_dir, result) = unpack(&[Item::Dir("x-1/")]);
        assert!(matches!(result, Err(ArchiveError::Empty)), "{result:?}");
    }
}
