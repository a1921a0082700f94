//! `make package ARCH=arm64`: the release zips Lambda runs. Every zip in
//! `dist/` is one of the Makefile's `FUNCTIONS` and holds exactly one entry,
//! an executable `bootstrap` that is a 64-bit little-endian aarch64 ELF
//! binary; `SHA256SUMS` covers them all.
//!
//! Slow on purpose: a release cross-build (LTO, one codegen unit) of every
//! function takes minutes on two cores the first time, less once cargo has
//! cached it, so it is `#[ignore]`d in `make test` and run by `.ci/run` on its
//! own after the rest. It runs under `nice` so the emulator tests beside it keep their
//! timing. One architecture only; `ARCH=x86_64` builds the same way.
//!
//! The architecture is read from the ELF header here (`e_machine` 0xB7 is
//! EM_AARCH64), because `file` is not on a fresh Debian; when `file` is
//! installed its verdict is checked too. The zips are read with Python's
//! `zipfile` from the project venv, so `unzip` is not needed either.

use std::path::{Path, PathBuf};
use std::process::Command;

use deployer_e2e::root;
use local_stack::emulator::venv_python;

/// `INSPECT_ZIP ZIP OUT`: prints `name mode` for each entry and writes the
/// entry `bootstrap` (if any) to OUT.
const INSPECT_ZIP: &str = r#"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for info in z.infolist():
        print(info.filename, oct((info.external_attr >> 16) & 0o777))
    if "bootstrap" in z.namelist():
        with open(sys.argv[2], "wb") as out:
            out.write(z.read("bootstrap"))
"#;

const EM_AARCH64: u16 = 0xB7;

/// `FUNCTIONS` from the Makefile.
fn functions() -> Vec<String> {
    let makefile = std::fs::read_to_string(root().join("Makefile")).unwrap();
    makefile
        .lines()
        .find_map(|line| line.strip_prefix("FUNCTIONS := "))
        .expect("Makefile sets FUNCTIONS")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The entries of `zip` as (name, unix mode), with `bootstrap` written to `out`.
fn inspect(zip: &Path, out: &Path) -> Vec<(String, u32)> {
    let listed = Command::new(venv_python(&root()).unwrap())
        .arg("-c")
        .arg(INSPECT_ZIP)
        .arg(zip)
        .arg(out)
        .output()
        .expect("running the venv's python");
    assert!(
        listed.status.success(),
        "{}: {}",
        zip.display(),
        tail(&listed.stderr)
    );
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|line| {
            let (name, mode) = line.rsplit_once(' ').unwrap();
            let mode = u32::from_str_radix(mode.trim_start_matches("0o"), 8).unwrap();
            (name.to_owned(), mode)
        })
        .collect()
}

/// Asserts `bootstrap` is an aarch64 executable, from its ELF header.
fn assert_aarch64_elf(name: &str, bootstrap: &[u8]) {
    assert!(
        bootstrap.len() >= 64,
        "{name}: bootstrap is not an ELF file"
    );
    assert_eq!(&bootstrap[..4], b"\x7fELF", "{name}: bootstrap is not ELF");
    assert_eq!(bootstrap[4], 2, "{name}: not a 64-bit ELF (EI_CLASS)");
    assert_eq!(bootstrap[5], 1, "{name}: not little-endian (EI_DATA)");
    let e_type = u16::from_le_bytes([bootstrap[16], bootstrap[17]]);
    assert!(
        e_type == 2 || e_type == 3,
        "{name}: ELF type {e_type} is neither an executable nor a PIE"
    );
    let e_machine = u16::from_le_bytes([bootstrap[18], bootstrap[19]]);
    assert_eq!(
        e_machine, EM_AARCH64,
        "{name}: ELF machine {e_machine:#x}, not aarch64"
    );
}

/// `file`'s verdict, when `file` is installed.
fn file_says(path: &Path) -> Option<String> {
    let out = Command::new("file").arg("-b").arg(path).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
#[ignore = "a cold arm64 release build takes many minutes; .ci/run runs it after `make test`"]
fn make_package_builds_one_aarch64_bootstrap_per_function() {
    let built = Command::new("nice")
        .args(["-n", "10", "make", "package", "ARCH=arm64"])
        .current_dir(root())
        .output()
        .expect("running make");
    assert!(
        built.status.success(),
        "make package ARCH=arm64 failed\nstdout:\n{}\nstderr:\n{}",
        tail(&built.stdout),
        tail(&built.stderr)
    );

    let dist = root().join("dist");
    let functions = functions();
    let mut zips: Vec<String> = std::fs::read_dir(&dist)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|name| name.strip_suffix(".zip").map(str::to_owned))
        .collect();
    zips.sort();
    let mut expected = functions.clone();
    expected.sort();
    assert_eq!(zips, expected, "dist/ holds exactly the FUNCTIONS zips");

    let scratch =
        Scratch(std::env::temp_dir().join(format!("deployer-package-test-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).unwrap();
    for name in &functions {
        let zip = dist.join(format!("{name}.zip"));
        let bootstrap = scratch.0.join(format!("{name}-bootstrap"));
        let entries = inspect(&zip, &bootstrap);
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["bootstrap"], "{name}.zip holds only bootstrap");
        let mode = entries[0].1;
        assert!(
            mode & 0o111 != 0,
            "{name}: bootstrap mode {mode:o} is not executable"
        );
        assert_aarch64_elf(name, &std::fs::read(&bootstrap).unwrap());
        if let Some(verdict) = file_says(&bootstrap) {
            assert!(
                verdict.contains("ELF 64-bit") && verdict.contains("aarch64"),
                "{name}: file says {verdict}"
            );
        }
    }

    // SHA256SUMS lists every zip and the state machine definition.
    let sums = std::fs::read_to_string(dist.join("SHA256SUMS")).unwrap();
    let mut listed: Vec<&str> = sums
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .map(|name| name.trim_start_matches('*'))
        .collect();
    listed.sort();
    let mut wanted: Vec<String> = functions.iter().map(|f| format!("{f}.zip")).collect();
    wanted.push("deployment.asl.json".to_owned());
    wanted.sort();
    assert_eq!(listed, wanted);
}
