//! The built site on local disk: every file, hashed, with its headers.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::layout::{ManifestEntry, MANIFEST_NAME};
use super::PublishError;
use crate::content;

/// A file of the built site on local disk.
#[derive(Debug, Clone)]
pub(super) struct LocalFile {
    pub(super) disk_path: PathBuf,
    pub(super) digest: [u8; 32],
    pub(super) entry: ManifestEntry,
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

/// Every file under `root` as (site path, disk path), the root manifest
/// left out. Symlinked files are followed; a symlinked directory, or
/// anything that is neither file nor directory, is refused.
fn walk(root: &Path) -> Result<Vec<(String, PathBuf)>, PublishError> {
    let mut found = Vec::new();
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let local = |source| PublishError::Local {
            path: dir.clone(),
            source,
        };
        for entry in std::fs::read_dir(&dir).map_err(local)? {
            let entry = entry.map_err(local)?;
            let disk_path = entry.path();
            let name = entry
                .file_name()
                .into_string()
                .map_err(|_| PublishError::NonUtf8Path {
                    path: disk_path.clone(),
                })?;
            let site_path = format!("{prefix}{name}");
            // Follows symlinks: a linked file is published as a file.
            let metadata = std::fs::metadata(&disk_path).map_err(|source| PublishError::Local {
                path: disk_path.clone(),
                source,
            })?;
            if metadata.is_dir() {
                if entry.file_type().is_ok_and(|t| t.is_symlink()) {
                    // A linked directory can loop back on itself.
                    return Err(PublishError::NotAFile { path: disk_path });
                }
                pending.push((disk_path, format!("{site_path}/")));
            } else if !metadata.is_file() {
                return Err(PublishError::NotAFile { path: disk_path });
            } else if site_path != MANIFEST_NAME {
                found.push((site_path, disk_path));
            }
        }
    }
    Ok(found)
}

fn hash_file(path: &Path, buffer: &mut [u8]) -> Result<Hashed, PublishError> {
    let local = |source| PublishError::Local {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(local)?;
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
}
