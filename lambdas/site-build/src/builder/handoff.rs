//! The built site between the builder and site-build: a gzip-compressed
//! tar of regular files and folders, nothing else.
//!
//! The builder packs only what the publisher would publish (the same walk
//! refuses links and escapes, naming them). site-build unpacks it as
//! hostile data: an entry that is not a plain file or folder, an absolute
//! path, a `..`, or more than the size cap ends the build, naming the
//! entry; nothing is ever written outside the target folder.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use tar::{EntryType, Header};

use crate::publish::{site_files, PublishError};

/// Unpacked size cap of a built site.
pub const DEFAULT_MAX_SITE_BYTES: u64 = 2 * 1024 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// The output holds what is never published (links, escapes).
    #[error(transparent)]
    Refused(#[from] PublishError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("the built site's entry {entry:?} is refused: {reason}")]
    Entry { entry: String, reason: String },
    #[error("the built site is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the built site holds no files")]
    Empty,
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> HandoffError {
    let what = what.into();
    move |source| HandoffError::Io { what, source }
}

/// A packed site.
#[derive(Debug)]
pub struct PackedSite {
    pub archive: Vec<u8>,
    pub files: usize,
    /// Bytes of file content.
    pub bytes: u64,
}

/// Packs the built site in `dir`: every file the publisher would publish,
/// by its site path, mode 0644. Blocking.
pub fn pack_site(dir: &Path) -> Result<PackedSite, HandoffError> {
    let mut files = site_files(dir)?;
    files.sort();
    let mut archive = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    let mut bytes = 0;
    for (site_path, disk_path) in &files {
        let mut file = OpenOptions::new()
            .read(true)
            // Swapped for a link since the walk: refused, not followed.
            .custom_flags(libc::O_NOFOLLOW)
            .open(disk_path)
            .map_err(io_error(format!("opening {site_path}")))?;
        let size = file
            .metadata()
            .map_err(io_error(format!("reading {site_path}")))?
            .len();
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(size);
        header.set_mtime(0);
        archive
            .append_data(&mut header, site_path, (&mut file).take(size))
            .map_err(io_error(format!("packing {site_path}")))?;
        bytes += size;
    }
    let archive = archive
        .into_inner()
        .and_then(GzEncoder::finish)
        .map_err(io_error("finishing the archive"))?;
    Ok(PackedSite {
        archive,
        files: files.len(),
        bytes,
    })
}

/// Unpacks a packed site into `into` (created; must not exist or be
/// empty), at most `max_bytes` of file content. Returns the number of
/// files. On any error `into` is removed. Blocking.
pub fn unpack_site(archive: &[u8], into: &Path, max_bytes: u64) -> Result<usize, HandoffError> {
    let result = unpack_into(archive, into, max_bytes);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(into);
    }
    result
}

fn unpack_into(archive: &[u8], into: &Path, max_bytes: u64) -> Result<usize, HandoffError> {
    std::fs::create_dir_all(into).map_err(io_error(format!("creating {}", into.display())))?;
    if std::fs::read_dir(into)
        .map_err(io_error(format!("reading {}", into.display())))?
        .next()
        .is_some()
    {
        return Err(HandoffError::Io {
            what: format!("unpacking into {}", into.display()),
            source: io::Error::other("it is not empty"),
        });
    }
    let mut reader = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let mut files = 0;
    let mut total: u64 = 0;
    for entry in reader
        .entries()
        .map_err(io_error("reading the built site"))?
    {
        let mut entry = entry.map_err(io_error("reading the built site"))?;
        let raw = entry
            .path_bytes()
            .into_owned()
            .into_iter()
            .take(300)
            .collect::<Vec<_>>();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let refuse = |reason: &str| HandoffError::Entry {
            entry: shown.clone(),
            reason: reason.to_owned(),
        };
        let relative = safe_relative(
            &entry
                .path()
                .map_err(|_| refuse("its name is not a valid path"))?,
        )
        .ok_or_else(|| refuse("it is absolute or has a '..'"))?;
        let kind = entry.header().entry_type();
        let target = into.join(&relative);
        match kind {
            EntryType::Directory => {
                std::fs::create_dir_all(&target).map_err(io_error(format!("creating {shown}")))?
            }
            EntryType::Regular | EntryType::Continuous => {
                let size = entry.header().size().unwrap_or(u64::MAX);
                total = total.saturating_add(size);
                if total > max_bytes {
                    return Err(HandoffError::TooLarge { limit: max_bytes });
                }
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(io_error(format!("creating the folder of {shown}")))?;
                }
                let mut out = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    // Folders are made here, files are new: nothing to follow.
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(io_error(format!("writing {shown}")))?;
                let copied = io::copy(&mut (&mut entry).take(size), &mut out)
                    .map_err(io_error(format!("writing {shown}")))?;
                if copied != size {
                    return Err(refuse("the archive ends inside it"));
                }
                out.flush().map_err(io_error(format!("writing {shown}")))?;
                files += 1;
            }
            EntryType::Symlink => return Err(refuse("it is a symbolic link")),
            EntryType::Link => return Err(refuse("it is a hard link")),
            other => {
                return Err(refuse(&format!(
                    "it is a {other:?} entry, not a file or a folder"
                )))
            }
        }
    }
    if files == 0 {
        return Err(HandoffError::Empty);
    }
    Ok(files)
}

/// `path` when it is relative and has only plain names (`.` dropped).
fn safe_relative(path: &Path) -> Option<PathBuf> {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => clean.push(name),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!clean.as_os_str().is_empty()).then_some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "handoff-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(root: &Path, path: &str, text: &str) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn a_site_round_trips_file_for_file() {
        let dir = scratch("round");
        let site = dir.join("dist");
        write(&site, "index.html", "<h1>hi</h1>");
        write(&site, "assets/app.js", "console.log(1)");
        let packed = pack_site(&site).unwrap();
        assert_eq!((packed.files, packed.bytes), (2, 25));
        let out = dir.join("out");
        assert_eq!(unpack_site(&packed.archive, &out, 1 << 20).unwrap(), 2);
        assert_eq!(
            std::fs::read_to_string(out.join("assets/app.js")).unwrap(),
            "console.log(1)"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn packing_refuses_links_naming_each() {
        let dir = scratch("links");
        let site = dir.join("dist");
        write(&site, "index.html", "x");
        std::os::unix::fs::symlink("/proc/self/environ", site.join("x")).unwrap();
        let error = pack_site(&site).unwrap_err().to_string();
        assert!(
            error.contains("x is a symlink to /proc/self/environ (outside the output directory)"),
            "{error}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A tar with one entry of `kind` named `name`, as a hostile builder
    /// could upload.
    fn forged(name: &str, kind: EntryType, link: Option<&str>) -> Vec<u8> {
        let mut archive = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_size(if link.is_some() { 0 } else { 4 });
        let bytes = header.as_gnu_mut().unwrap();
        bytes.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            bytes.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_cksum();
        let data: &[u8] = if link.is_some() { b"" } else { b"data" };
        archive.append(&header, data).unwrap();
        archive.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn unpacking_refuses_links_escapes_and_devices_naming_the_entry() {
        let dir = scratch("hostile");
        let cases = [
            (
                forged("x", EntryType::Symlink, Some("/proc/self/environ")),
                "\"x\" is refused: it is a symbolic link",
            ),
            (
                forged("h", EntryType::Link, Some("/etc/passwd")),
                "\"h\" is refused: it is a hard link",
            ),
            (
                forged("../up.html", EntryType::Regular, None),
                "\"../up.html\" is refused: it is absolute or has a '..'",
            ),
            (
                forged("/etc/cron.d/x", EntryType::Regular, None),
                "\"/etc/cron.d/x\" is refused: it is absolute or has a '..'",
            ),
            (
                forged("fifo", EntryType::Fifo, None),
                "\"fifo\" is refused: it is a Fifo entry",
            ),
        ];
        for (i, (archive, expected)) in cases.iter().enumerate() {
            let out = dir.join(format!("out-{i}"));
            let error = unpack_site(archive, &out, 1 << 20).unwrap_err().to_string();
            assert!(error.contains(expected), "{expected} in {error}");
            assert!(!out.exists(), "a refused site leaves nothing behind");
        }
        assert!(!dir.parent().unwrap().join("up.html").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unpacking_stops_at_the_size_cap() {
        let dir = scratch("cap");
        let site = dir.join("dist");
        write(&site, "big.bin", &"x".repeat(1000));
        let packed = pack_site(&site).unwrap();
        let error = unpack_site(&packed.archive, &dir.join("out"), 999).unwrap_err();
        assert!(
            matches!(error, HandoffError::TooLarge { limit: 999 }),
            "{error}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
