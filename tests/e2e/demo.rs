//! `make demo` as a newcomer runs it: the real `deployer-local demo`, whose
//! output must show the sample app's build PENDING, then IN_PROGRESS, then
//! SUCCESS (its CloudFormation takes time, as on AWS).

use deployer_e2e::{root, target_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_the_sample_build_pending_in_progress_and_successful() {
    let demo = target_dir().join("debug").join("deployer-local");
    let output = tokio::process::Command::new(&demo)
        .args(["demo", "--env", "dev"])
        .current_dir(root())
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {}: {e}", demo.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let transitions: Vec<(time::OffsetDateTime, &str)> = stdout
        .lines()
        .filter(|line| line.contains("  sample-app/dev/"))
        .map(|line| {
            let mut fields = line.split_whitespace();
            let at = fields.next().unwrap_or_default();
            let at =
                time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                    .unwrap_or_else(|e| panic!("{at:?} is not RFC 3339: {e}"));
            (at, fields.nth(1).unwrap_or_default())
        })
        .collect();
    let statuses: Vec<&str> = transitions.iter().map(|(_, status)| *status).collect();
    assert_eq!(statuses, ["PENDING", "IN_PROGRESS", "SUCCESS"], "{stdout}");
    // A change set and a stack create, each kept in progress for 1.5 s.
    let deploying = transitions[2].0 - transitions[1].0;
    assert!(
        deploying >= time::Duration::seconds(3),
        "{deploying} in progress: {stdout}"
    );
    assert!(
        stdout.contains("==> preview of feature/about-page is live at"),
        "{stdout}"
    );
}
