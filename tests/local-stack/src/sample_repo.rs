//! A real git repository holding `examples/sample-site`, for the demo and
//! the tests: the GitHub double serves its commits as tarballs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// A git repository in a folder of its own, removed on drop.
pub struct SampleRepo {
    root: PathBuf,
    pub dir: PathBuf,
}

impl SampleRepo {
    /// Copies the sample site (without `node_modules`/`dist`) into a fresh
    /// repository under `parent` and commits it on `main`.
    pub fn create(project_root: &Path, parent: &Path) -> anyhow::Result<Self> {
        let root = parent.join(format!(
            "sample-site-repo-{}-{}",
            std::process::id(),
            unique_suffix()
        ));
        let dir = root.join("sample-site");
        copy_dir(&project_root.join("examples/sample-site"), &dir)?;
        git_in(&dir, &["init", "-q", "-b", "main"])?;
        let repo = Self { root, dir };
        repo.commit("The sample site")?;
        Ok(repo)
    }

    /// Runs git with a fixed identity and no user or system config.
    pub fn git(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec![
            "-c",
            "user.name=Site Builder",
            "-c",
            "user.email=builder@example.com",
            "-c",
            "commit.gpgsign=false",
        ];
        all.extend_from_slice(args);
        git_in(&self.dir, &all)
    }

    /// Commits everything in the work tree; the new commit's full id.
    pub fn commit(&self, message: &str) -> anyhow::Result<String> {
        self.git(&["add", "-A"])?;
        self.git(&["commit", "-q", "--allow-empty", "-m", message])?;
        self.head()
    }

    pub fn head(&self) -> anyhow::Result<String> {
        self.git(&["rev-parse", "HEAD"])
    }

    /// Creates `branch` at the current commit and switches to it.
    pub fn branch(&self, branch: &str) -> anyhow::Result<()> {
        self.git(&["checkout", "-q", "-b", branch]).map(|_| ())
    }

    pub fn checkout(&self, branch: &str) -> anyhow::Result<()> {
        self.git(&["checkout", "-q", branch]).map(|_| ())
    }

    pub fn write(&self, path: &str, content: &str) -> anyhow::Result<()> {
        let path = self.dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))
    }
}

impl Drop for SampleRepo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

fn git_in(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .context("running git (is it installed?)")?;
    if !output.status.success() {
        bail!(
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "node_modules" || name == "dist" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
