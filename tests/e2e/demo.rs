//! `make demo KEEP=1` as a newcomer runs it: the real `deployer-local demo
//! --keep`, whose output must show the sample app's build PENDING, then
//! IN_PROGRESS, then SUCCESS (its CloudFormation takes time, as on AWS),
//! then `deployer status` with the sample app's stack, the ECS service and
//! the site's targets live, then the dashboard's URL, which serves the grid
//! until Ctrl-C stops everything.

use std::time::Duration;

use deployer_e2e::{root, target_dir};
use tokio::io::AsyncBufReadExt;

/// The cells of a `deployer status` row, split at the header's columns.
fn cells(header: &str, line: &str) -> Vec<String> {
    let starts: Vec<usize> = (0..header.len())
        .filter(|&i| i == 0 || (header.as_bytes()[i] != b' ' && header.as_bytes()[i - 1] == b' '))
        .collect();
    let chars: Vec<char> = line.chars().collect();
    starts
        .iter()
        .enumerate()
        .map(|(n, start)| {
            let end = starts
                .get(n + 1)
                .copied()
                .unwrap_or(chars.len())
                .min(chars.len());
            chars[(*start).min(end)..end]
                .iter()
                .collect::<String>()
                .trim()
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_the_build_then_what_is_deployed_where_and_serves_the_dashboard() {
    let demo = target_dir().join("debug").join("deployer-local");
    let mut child = tokio::process::Command::new(&demo)
        .args(["demo", "--env", "dev", "--keep"])
        .current_dir(root())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", demo.display()));
    let pid = child.id().expect("the demo runs");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    let kept = tokio::time::timeout(Duration::from_secs(600), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            stdout.push_str(&line);
            stdout.push('\n');
            if line == "Press Ctrl-C to stop." {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(kept, Ok(true), "the demo did not keep running:\n{stdout}");

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

    // `deployer status`: every target of the demo, live, with its version.
    let mut status = stdout
        .lines()
        .skip_while(|l| !l.starts_with("ENV "))
        .take_while(|l| !l.starts_with("==>"));
    let header = status
        .next()
        .unwrap_or_else(|| panic!("no status:\n{stdout}"));
    let rows: Vec<Vec<String>> = status.map(|l| cells(header, l)).collect();
    let live = |kind: &str, target: &str| -> String {
        let row = rows
            .iter()
            .find(|r| r[1] == kind && r[2] == target)
            .unwrap_or_else(|| panic!("no {kind} {target} in the status:\n{stdout}"));
        assert_eq!(row[0], "dev");
        assert_eq!(row[6], "-", "nothing open or failed: {row:?}");
        row[3].clone()
    };
    assert_eq!(
        live("stack", "sample-app"),
        format!("1.{:x}", u64::from(pid) * 0x9e37)
    );
    assert!(live("service", "app_service_web_dev")
        .starts_with("app_service_web_dev:2 sha256:0f1e2d3c4b5a"));
    assert_eq!(live("site", "production").len(), 12);
    let preview = rows
        .iter()
        .find(|r| r[2].starts_with("preview/feature-about-page"))
        .unwrap_or_else(|| panic!("no preview in the status:\n{stdout}"));
    assert_eq!(preview[3].len(), 12, "{preview:?}");
    assert_eq!(rows.len(), 4, "{stdout}");

    // The dashboard's URL, serving the grid.
    let url = stdout
        .lines()
        .find_map(|l| l.split_once("==> dashboard").map(|(_, rest)| rest))
        .and_then(|rest| rest.rsplit_once(": "))
        .map(|(_, url)| url.trim().to_owned())
        .unwrap_or_else(|| panic!("no dashboard URL:\n{stdout}"));
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let page = reqwest::get(&url).await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains(r#"data-target="stack:sample-app""#), "{page}");

    // Ctrl-C stops everything.
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let exit = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the demo stops after Ctrl-C")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    let mut rest = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push_str(&line);
    }
    assert!(rest.contains("==> stopping"), "{rest}");
    assert!(
        reqwest::get(&url).await.is_err(),
        "the dashboard stopped too"
    );
}
