//! `deployer status` and `deployer history` as an operator and a script
//! use them: aligned columns on a terminal (a real pty, through `script`)
//! and in a pipe, JSON, an empty install, an environment not installed,
//! and a failed deploy with its reason.

use std::process::Output;

use builddao::BuildStatus;
use deployer_e2e::{broken_template, succeeded as ok, target_dir, TestStack};
use serde_json::{json, Value};

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `deployer` with the stack's environment minus `unset`.
async fn deployer_without(stack: &TestStack, unset: &[&str], args: &[&str]) -> Output {
    tokio::process::Command::new(target_dir().join("debug").join("deployer"))
        .args(args)
        .envs(
            stack
                .pipeline
                .cli_env()
                .into_iter()
                .filter(|(k, _)| !unset.contains(&k.as_str())),
        )
        .output()
        .await
        .expect("deployer runs")
}

/// Runs `deployer` on a pseudo-terminal, as a person at a terminal does.
async fn deployer_on_a_terminal(stack: &TestStack, args: &[&str]) -> String {
    let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
    let mut command = quote(
        &target_dir()
            .join("debug")
            .join("deployer")
            .display()
            .to_string(),
    );
    for arg in args {
        command.push(' ');
        command.push_str(&quote(arg));
    }
    let out = tokio::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .envs(stack.pipeline.cli_env())
        .output()
        .await
        .expect("script (util-linux) runs");
    ok(&out).replace("\r\n", "\n")
}

/// The cells of `line` under `header`'s columns, checking that each cell
/// starts exactly where its column does (two spaces after the one before).
fn cells(header: &str, line: &str) -> Vec<String> {
    let mut starts = vec![0];
    let bytes = header.as_bytes();
    for i in 1..bytes.len() {
        if bytes[i] != b' ' && bytes[i - 1] == b' ' {
            starts.push(i);
        }
    }
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    for (n, start) in starts.iter().enumerate() {
        let end = starts
            .get(n + 1)
            .copied()
            .unwrap_or(chars.len())
            .min(chars.len());
        assert!(
            *start <= chars.len(),
            "row shorter than its columns:\n{header}\n{line}"
        );
        if *start > 0 {
            assert_eq!(
                (chars[start - 1], chars[start - 2]),
                (' ', ' '),
                "column {n} does not start at its header:\n{header}\n{line}"
            );
            assert_ne!(
                chars.get(*start),
                Some(&' '),
                "column {n} misaligned:\n{header}\n{line}"
            );
        }
        out.push(
            chars[*start..end]
                .iter()
                .collect::<String>()
                .trim()
                .to_owned(),
        );
    }
    out
}

fn is_utc_second(at: &str) -> bool {
    at.len() == 20
        && at.ends_with('Z')
        && time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_an_empty_install_and_of_environments_not_installed() {
    let stack = TestStack::start("dev", &[]).await;

    let out = stack.deployer(&["status"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout, "ENV  KIND  TARGET  LIVE  SINCE  BY  NOW\n");
    assert!(stderr.contains("dev: nothing deployed yet"), "{stderr}");

    let json: Value =
        serde_json::from_str(&ok(&stack.deployer(&["status", "--json"]).await)).unwrap();
    assert_eq!(
        json,
        json!({"environments": [{"env": "dev", "installed": true, "targets": [], "truncated": false}]})
    );

    // Without --env: every environment of DEPLOYER_ENVS, by the template's
    // table names; only dev is installed here.
    let unset = [
        "DEPLOYER_ENV",
        "DEPLOYER_BUILDS_TABLE",
        "DEPLOYER_SITE_TABLE",
        "DEPLOYER_SERVICE_TABLE",
    ];
    let out = deployer_without(&stack, &unset, &["status", "--json"]).await;
    let json: Value = serde_json::from_str(&ok(&out)).unwrap();
    let installed: Vec<(&str, bool)> = json["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["env"].as_str().unwrap(),
                e["installed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(installed, [("dev", true), ("stg", false), ("prd", false)]);
    let out = deployer_without(&stack, &unset, &["status"]).await;
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("prd: not installed (no prd-deployer-builds table)"),
        "{stderr}"
    );

    let out = stack.deployer(&["history", "shop"]).await;
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("no deployments of shop in dev"),
        "{:?}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_history_show_what_is_live_and_a_failed_deploy_with_its_reason() {
    let stack = TestStack::start("dev", &[]).await;
    let good = stack.upload_sample("shop", "1.aaaa", "hello").await;
    let good = stack.wait_terminal(&good.key()).await;
    assert_eq!(good.status, BuildStatus::Success);
    stack
        .upload(
            "shop",
            "main",
            "2.bbbb",
            &broken_template(),
            json!({"Greeting": "x"}),
        )
        .await;
    let bad = stack.build_of("shop", "2.bbbb").await;
    let bad = stack.wait_terminal(&bad.key()).await;
    assert_eq!(bad.status, BuildStatus::Failed);
    let reason = bad.error_msg.clone().unwrap();
    let by = good.uploaded_by.clone().unwrap_or_else(|| "-".into());

    // In a pipe: RFC 3339 UTC times, columns where the header puts them.
    let stdout = ok(&stack.deployer(&["status"]).await);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let row = cells(lines[0], lines[1]);
    assert_eq!(row[..4], ["dev", "stack", "shop", "1.aaaa"], "{stdout}");
    assert!(is_utc_second(&row[4]), "since {:?}", row[4]);
    assert_eq!(row[5], by);
    assert_eq!(row[6], format!("FAILED 2.bbbb: {reason}"));

    // On a terminal: the same columns, how long ago added to the time.
    let stdout = deployer_on_a_terminal(&stack, &["status"]).await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let row = cells(lines[0], lines[1]);
    let (at, ago) = row[4].split_once(' ').expect("time and how long ago");
    assert!(is_utc_second(at), "{stdout}");
    assert!(ago.starts_with('(') && ago.ends_with(" ago)"), "{stdout}");
    assert_eq!(row[6], format!("FAILED 2.bbbb: {reason}"));

    let json: Value =
        serde_json::from_str(&ok(&stack.deployer(&["status", "--json"]).await)).unwrap();
    let target = &json["environments"][0]["targets"][0];
    assert_eq!(target["kind"], "stack");
    assert_eq!(target["target"], "shop");
    assert_eq!(target["live"]["version"], "1.aaaa");
    assert_eq!(target["live"]["state"], "SUCCEEDED");
    assert_eq!(target["latest"]["version"], "2.bbbb");
    assert_eq!(target["latest"]["state"], "FAILED");
    assert_eq!(target["latest"]["reason"], reason.as_str());
    assert_eq!(target["open"], json!([]));
    assert_eq!(json["environments"][0]["truncated"], false);

    // More records than the cap on what `status` reads: it says so, on
    // stderr and in the JSON, rather than dropping targets silently.
    let capped = |args: &'static [&'static str]| {
        tokio::process::Command::new(target_dir().join("debug").join("deployer"))
            .args(args)
            .envs(stack.pipeline.cli_env())
            .env("DEPLOYER_RECENT_PER_KIND", "1")
            .output()
    };
    let out = capped(&["status"]).await.expect("deployer runs");
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("dev: truncated: only the newest 1 records of each kind were read"),
        "{stderr}"
    );
    let out = capped(&["status", "--json"]).await.expect("deployer runs");
    let capped_json: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(capped_json["environments"][0]["truncated"], true);

    // History, newest first, the failure's reason in its row.
    let stdout = ok(&stack.deployer(&["history", "shop"]).await);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let newest = cells(lines[0], lines[1]);
    let older = cells(lines[0], lines[2]);
    assert_eq!(
        (newest[0].as_str(), newest[1].as_str(), newest[2].as_str()),
        (bad.sk.as_str(), "FAILED", "2.bbbb")
    );
    assert_eq!(newest[7], reason);
    assert_eq!(
        (older[1].as_str(), older[2].as_str()),
        ("SUCCEEDED", "1.aaaa")
    );
    assert!(is_utc_second(&older[4]), "{stdout}");

    let json: Value = serde_json::from_str(&ok(&stack
        .deployer(&["history", "stack:shop", "--json"])
        .await))
    .unwrap();
    assert_eq!(json["target"], "stack:shop");
    let newest = &json["deployments"][0];
    let statuses: Vec<&str> = newest["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.first(), Some(&"PENDING"));
    assert_eq!(statuses.last(), Some(&"FAILED"));
    assert!(statuses.contains(&"IN_PROGRESS"), "{statuses:?}");
    assert_eq!(
        newest["transitions"].as_array().unwrap().last().unwrap()["reason"],
        reason.as_str()
    );
    for at in [
        &newest["started_at"],
        &newest["finished_at"],
        &newest["transitions"][0]["at"],
    ] {
        assert!(is_utc_second(at.as_str().unwrap()), "{at}");
    }
    let labels: Vec<&str> = newest["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["console", "execution", "logs"], "{newest}");
    assert!(
        newest["links"][2]["url"]
            .as_str()
            .unwrap()
            .ends_with("#logsV2:log-groups/log-group/$252Faws$252Fvendedlogs$252Fstates$252Fdev-deployer-deployment"),
        "the state machine's log group: {newest}"
    );
    assert_eq!(json["deployments"][1]["version"], "1.aaaa");
    assert_eq!(
        json["deployments"][1]["parameters"],
        serde_json::to_value(&good.parameters).unwrap()
    );

    // Paginated: one at a time, newest first.
    let first: Value = serde_json::from_str(&ok(&stack
        .deployer(&["history", "shop", "--limit", "1", "--json"])
        .await))
    .unwrap();
    assert_eq!(first["deployments"].as_array().unwrap().len(), 1);
    assert_eq!(first["deployments"][0]["id"], bad.sk.as_str());
    let next = first["next"].as_str().expect("a next page").to_owned();
    let second: Value = serde_json::from_str(&ok(&stack
        .deployer(&[
            "history", "shop", "--limit", "1", "--after", &next, "--json",
        ])
        .await))
    .unwrap();
    assert_eq!(second["deployments"][0]["id"], good.sk.as_str());

    // builds list lines its columns up in a pipe too.
    let stdout = ok(&stack.deployer(&["builds", "list", "shop"]).await);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(cells(lines[0], lines[1])[1], "FAILED");
    assert_eq!(cells(lines[0], lines[2])[1..3], ["SUCCESS", "1.aaaa"]);
    assert!(is_utc_second(&cells(lines[0], lines[2])[4]), "{stdout}");
}
