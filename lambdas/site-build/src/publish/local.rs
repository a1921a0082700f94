//! The built site on local disk: every file, hashed, with its headers.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use sitedao::MANIFEST_NAME;

use super::layout::ManifestEntry;
use super::PublishError;
use crate::content;

/// A file of the built site on local disk.
#[derive(Debug, Clone)]
pub(super) struct LocalFile {
    pub(super) disk_path: PathBuf,
    pub(super) digest: [u8; 32],
    pub(super) entry: ManifestEntry,
}

/// A path of the build output that is not published, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A symlink; `path` is relative to the output directory (`.` for the
    /// directory itself), `target` as written in the link.
    Symlink {
        path: String,
        target: PathBuf,
        outside: bool,
    },
    /// A path that resolves outside the output directory.
    Outside { path: String, resolved: PathBuf },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Symlink {
                path,
                target,
                outside,
            } => {
                let side = if *outside { "outside" } else { "inside" };
                write!(
                    f,
                    "{path} is a symlink to {} ({side} the output directory)",
                    target.display()
                )
            }
            Self::Outside { path, resolved } => write!(
                f,
                "{path} resolves to {}, outside the output directory",
                resolved.display()
            ),
        }
    }
}

/// At most this many refusals are named; the count says the rest.
const REFUSALS_NAMED: usize = 10;

pub(crate) fn list_refusals(refused: &[Refusal]) -> String {
    let mut text = refused
        .iter()
        .take(REFUSALS_NAMED)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if refused.len() > REFUSALS_NAMED {
        text.push_str(&format!("; and {} more", refused.len() - REFUSALS_NAMED));
    }
    text
}

/// A file's SHA-256 and size.
type Hashed = ([u8; 32], u64);

/// The built site: every file under its folder, hashed.
#[derive(Debug, Clone)]
pub(super) struct LocalSite {
    pub(super) files: BTreeMap<String, LocalFile>,
}

impl LocalSite {
    /// Walks `root`, then hashes every file, on all cores (blocking: run
    /// it off the async workers).
    pub(super) fn scan(root: &Path) -> Result<Self, PublishError> {
        let found = walk(root)?;
        if found.is_empty() {
            return Err(PublishError::EmptySite {
                dir: root.to_path_buf(),
            });
        }
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(found.len());
        let chunk = found.len().div_ceil(threads);
        let hashed: Vec<Result<Vec<Hashed>, PublishError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = found
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        let mut buffer = vec![0u8; 64 * 1024];
                        part.iter()
                            .map(|(_, disk_path)| hash_file(disk_path, &mut buffer))
                            .collect()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| worker.join().expect("hashing does not panic"))
                .collect()
        });
        let mut files = BTreeMap::new();
        let digests = hashed.into_iter().collect::<Result<Vec<_>, _>>()?;
        for ((site_path, disk_path), (digest, size)) in
            found.into_iter().zip(digests.into_iter().flatten())
        {
            let entry = ManifestEntry {
                sha256: hex::encode(digest),
                size,
                content_type: content::content_type(&site_path),
                cache_control: content::cache_control(&site_path).to_owned(),
            };
            files.insert(
                site_path,
                LocalFile {
                    disk_path,
                    digest,
                    entry,
                },
            );
        }
        Ok(Self { files })
    }

    pub(super) fn entries(&self) -> BTreeMap<String, ManifestEntry> {
        self.files
            .iter()
            .map(|(path, file)| (path.clone(), file.entry.clone()))
            .collect()
    }
}

/// Every file of a built site under `root`, as (site path, disk path),
/// refusing what [`walk`] refuses: what the builder packs is exactly what
/// the publisher would publish.
pub(crate) fn site_files(root: &Path) -> Result<Vec<(String, PathBuf)>, PublishError> {
    walk(root)
}

/// Every file under `root` as (site path, disk path), the root manifest
/// left out. The output is the work of untrusted build code, so it is data:
/// a symlink anywhere (to a file, a directory, `/proc/self/environ`, a path
/// inside or outside the output), anything that is neither file nor
/// directory, and any path that resolves outside `root` are refused. Every
/// link and escape is named, sorted, not only the first. Nothing is
/// followed.
fn walk(root: &Path) -> Result<Vec<(String, PathBuf)>, PublishError> {
    let local = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PublishError::Local { path, source }
    };
    if std::fs::symlink_metadata(root)
        .map_err(local(root))?
        .file_type()
        .is_symlink()
    {
        let target = std::fs::read_link(root).map_err(local(root))?;
        return Err(PublishError::UnsafeOutput {
            refused: vec![Refusal::Symlink {
                path: ".".to_owned(),
                target,
                outside: true,
            }],
        });
    }
    let real_root = root.canonicalize().map_err(local(root))?;
    let mut found = Vec::new();
    let mut refused = Vec::new();
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let real_dir = dir.canonicalize().map_err(local(&dir))?;
        for entry in std::fs::read_dir(&dir).map_err(local(&dir))? {
            let entry = entry.map_err(local(&dir))?;
            let disk_path = entry.path();
            let name = entry
                .file_name()
                .into_string()
                .map_err(|_| PublishError::NonUtf8Path {
                    path: disk_path.clone(),
                })?;
            let site_path = format!("{prefix}{name}");
            // The entry itself, not what it may point to.
            let kind = entry.file_type().map_err(local(&disk_path))?;
            if kind.is_symlink() {
                let target = std::fs::read_link(&disk_path).map_err(local(&disk_path))?;
                let outside = !resolves_inside(&real_dir.join(&target), &real_root);
                refused.push(Refusal::Symlink {
                    path: site_path,
                    target,
                    outside,
                });
                continue;
            }
            // Without links every entry is inside; checked anyway, so a
            // path that escapes by any other means is refused too.
            let real = disk_path.canonicalize().map_err(local(&disk_path))?;
            if !real.starts_with(&real_root) {
                refused.push(Refusal::Outside {
                    path: site_path,
                    resolved: real,
                });
                continue;
            }
            if kind.is_dir() {
                pending.push((disk_path, format!("{site_path}/")));
            } else if !kind.is_file() {
                return Err(PublishError::NotAFile { path: disk_path });
            } else if site_path != MANIFEST_NAME {
                found.push((site_path, disk_path));
            }
        }
    }
    if !refused.is_empty() {
        refused.sort_by(|a, b| a.path().cmp(b.path()));
        return Err(PublishError::UnsafeOutput { refused });
    }
    Ok(found)
}

impl Refusal {
    fn path(&self) -> &str {
        match self {
            Self::Symlink { path, .. } | Self::Outside { path, .. } => path,
        }
    }
}

/// Whether `path` lands inside `real_root`: resolved on disk when it
/// exists, lexically (`..` taken off) when it does not (a dangling link).
fn resolves_inside(path: &Path, real_root: &Path) -> bool {
    if let Ok(real) = path.canonicalize() {
        return real.starts_with(real_root);
    }
    let mut lexical = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                lexical.pop();
            }
            std::path::Component::CurDir => {}
            other => lexical.push(other),
        }
    }
    lexical.starts_with(real_root)
}

fn hash_file(path: &Path, buffer: &mut [u8]) -> Result<Hashed, PublishError> {
    let local = |source| PublishError::Local {
        path: path.to_path_buf(),
        source,
    };
    // O_NOFOLLOW: a file swapped for a link after the walk is refused, not
    // read (ELOOP).
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(local)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let read = file.read(buffer).map_err(local)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((hasher.finalize().into(), size))
}

/// S3 takes SHA-256 checksums in base64; sending one makes S3 refuse an
/// upload whose bytes are not the ones the manifest records.
pub(super) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn scanning_hashes_every_file_and_skips_only_the_root_manifest() {
        let dir = std::env::temp_dir().join(format!("site-build-scan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("blog/.hidden")).unwrap();
        std::fs::write(dir.join("index.html"), "<h1>hi</h1>").unwrap();
        std::fs::write(dir.join("blog/index.html"), "").unwrap();
        std::fs::write(dir.join("blog/.hidden/x.txt"), "x").unwrap();
        std::fs::write(dir.join(MANIFEST_NAME), "{}").unwrap();
        std::fs::write(dir.join("blog").join(MANIFEST_NAME), "{}").unwrap();
        let site = LocalSite::scan(&dir).unwrap();
        let paths: Vec<&str> = site.files.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [
                "blog/.deploy-manifest.json",
                "blog/.hidden/x.txt",
                "blog/index.html",
                "index.html"
            ]
        );
        let empty = &site.files["blog/index.html"].entry;
        assert_eq!(
            empty.sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(empty.size, 0);
        assert_eq!(site.files["index.html"].entry.size, 11);
        std::fs::remove_dir_all(&dir).unwrap();

        std::fs::create_dir_all(&dir).unwrap();
        assert!(matches!(
            LocalSite::scan(&dir),
            Err(PublishError::EmptySite { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn refusal(dir: &Path, links: &[(&str, &str)]) -> String {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("index.html"), "<h1>hi</h1>").unwrap();
        for (link, target) in links {
            std::os::unix::fs::symlink(target, dir.join(link)).unwrap();
        }
        let err = LocalSite::scan(dir).unwrap_err();
        assert!(matches!(err, PublishError::UnsafeOutput { .. }), "{err:?}");
        err.to_string()
    }

    #[test]
    fn scanning_refuses_every_symlink_naming_each_and_its_target() {
        let dir = std::env::temp_dir().join(format!("site-build-links-{}", std::process::id()));
        assert_eq!(
            refusal(
                &dir,
                &[("y", "../../etc/passwd"), ("x", "/proc/self/environ")]
            ),
            "the build output is refused, the publisher follows no links: \
             x is a symlink to /proc/self/environ (outside the output directory); \
             y is a symlink to ../../etc/passwd (outside the output directory)"
        );
        // Dangling, and outside only once `..` is resolved.
        let message = refusal(&dir, &[("sub/z", "../../../nowhere/at/all")]);
        assert!(
            message.contains("sub/z is a symlink to ../../../nowhere/at/all (outside"),
            "{message}"
        );
        // Inside the output is refused too: nothing is followed.
        let message = refusal(&dir, &[("sub/copy.html", "../index.html"), ("loop", ".")]);
        assert!(
            message.ends_with(
                "loop is a symlink to . (inside the output directory); \
                 sub/copy.html is a symlink to ../index.html (inside the output directory)"
            ),
            "{message}"
        );
        std::fs::remove_dir_all(&dir).unwrap();

        // The output directory itself a link to elsewhere.
        let real =
            std::env::temp_dir().join(format!("site-build-links-real-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&real);
        std::fs::create_dir_all(&real).unwrap();
        std::fs::write(real.join("index.html"), "x").unwrap();
        std::os::unix::fs::symlink(&real, &dir).unwrap();
        let message = LocalSite::scan(&dir).unwrap_err().to_string();
        assert!(message.contains(": . is a symlink to /"), "{message}");
        std::fs::remove_file(&dir).unwrap();
        std::fs::remove_dir_all(&real).unwrap();
    }

    #[test]
    fn a_long_list_of_refusals_names_ten_and_counts_the_rest() {
        let refused: Vec<Refusal> = (0..13)
            .map(|n| Refusal::Outside {
                path: format!("f{n:02}"),
                resolved: PathBuf::from("/elsewhere"),
            })
            .collect();
        let text = list_refusals(&refused);
        assert!(text.contains("f09 resolves to /elsewhere"), "{text}");
        assert!(!text.contains("f10"), "{text}");
        assert!(text.ends_with("; and 3 more"), "{text}");
    }

    #[test]
    fn hashing_refuses_a_file_swapped_for_a_link() {
        let dir = std::env::temp_dir().join(format!("site-build-swap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.join("a.txt")).unwrap();
        let err = hash_file(&dir.join("a.txt"), &mut [0u8; 64]).unwrap_err();
        assert!(matches!(err, PublishError::Local { .. }), "{err:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
