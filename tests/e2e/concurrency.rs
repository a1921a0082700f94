//! One deployment per stack at a time; the newest build wins.
//!
//! Each test forces one outcome of the stack lock (docs/state-machine.md,
//! "Lock"): CloudFormation is paced so a deploy holds the lock for seconds,
//! and where two executions would race, a fault or the order of delivery
//! decides who comes first. Every test also checks, from the executions'
//! histories, that no two executions were past AcquireLock on the stack at
//! the same moment.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sfn::types::HistoryEvent;
use builddao::{Build, BuildKey, BuildStatus, StatusChange};
use deployer_e2e::{param, root, s3_put_event, sample_template, TestStack};
use local_stack::emulator::wait_until;
use local_stack::{Caller, FaultKind, FaultRule};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

/// How long paced CloudFormation keeps change sets pending and stacks in
/// progress: a deploy holds its lock for at least twice this.
const PACE: Duration = Duration::from_secs(3);

async fn paced_stack(env: &str, parameters: &[(&str, &str)]) -> TestStack {
    TestStack::start_configured(env, parameters, |options| {
        options.cloudformation_pace = PACE;
    })
    .await
}

/// The stacks table's item for `stack_name`, string attributes only.
async fn lock_item(stack: &TestStack, stack_name: &str) -> HashMap<String, String> {
    let out = aws_sdk_dynamodb::Client::new(&stack.pipeline.sdk)
        .get_item()
        .table_name(&stack.pipeline.resources.stacks_table)
        .key("stack_name", AttributeValue::S(stack_name.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem on the stacks table");
    out.item
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| v.as_s().ok().map(|s| (k, s.clone())))
        .collect()
}

/// Waits until `attribute` of the stack's lock item is `sk`.
async fn wait_lock_attribute(stack: &TestStack, attribute: &str, sk: &str) {
    wait_until(
        &format!("{attribute} = {sk} on dev-shop"),
        Duration::from_secs(60),
        || async {
            let item = lock_item(stack, "dev-shop").await;
            Ok((item.get(attribute).map(String::as_str) == Some(sk)).then_some(()))
        },
    )
    .await
    .unwrap();
}

/// The build with its history, once it has ended.
async fn ended(stack: &TestStack, key: &BuildKey) -> (Build, Vec<StatusChange>) {
    let build = stack.wait_terminal(key).await;
    let tracked = stack
        .builds()
        .get_tracked(&build.key())
        .await
        .unwrap()
        .expect("build");
    (tracked.build, tracked.transitions)
}

/// Waits until no deployment execution runs: a build is SUCCESS before its
/// execution records the deploy and releases the lock.
async fn settle(stack: &TestStack) {
    wait_until(
        "every execution to end",
        Duration::from_secs(90),
        || async {
            let running = stack
                .executions()
                .await
                .iter()
                .any(|e| e.status().as_str() == "RUNNING");
            Ok((!running).then_some(()))
        },
    )
    .await
    .unwrap();
}

fn statuses(history: &[StatusChange]) -> Vec<BuildStatus> {
    history.iter().map(|c| c.status).collect()
}

/// Seconds since the epoch at which `state` was entered, in order.
fn entered(events: &[HistoryEvent], state: &str) -> Vec<f64> {
    events
        .iter()
        .filter(|e| e.state_entered_event_details().map(|d| d.name()) == Some(state))
        .map(|e| e.timestamp().as_secs_f64())
        .collect()
}

/// What the deployment ASL says about its lock: the state a successful
/// AcquireLock goes to, and the states that release the lock.
struct LockStates {
    after_acquire: String,
    releases: Vec<String>,
}

fn lock_states() -> LockStates {
    let asl: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("state-machine/deployment.asl.json")).unwrap(),
    )
    .unwrap();
    let states = asl["States"].as_object().unwrap();
    let after_acquire = states["AcquireLock"]["Next"].as_str().unwrap().to_owned();
    let releases = states
        .iter()
        .filter(|(_, s)| {
            s["Parameters"]["TableName"] == "${StacksTable}"
                && s["Parameters"]["UpdateExpression"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("REMOVE holder_sk"))
        })
        .map(|(name, _)| name.clone())
        .collect::<Vec<_>>();
    assert!(releases.len() >= 2, "{releases:?}");
    LockStates {
        after_acquire,
        releases,
    }
}

/// When one execution was past AcquireLock: from entering the state a
/// successful AcquireLock leads to, until entering a release. The lock item
/// is written before the first and cleared after the second, so these spans
/// lie inside the time the lock was really held.
#[derive(Debug, Clone)]
struct Holding {
    sk: String,
    from: f64,
    until: f64,
}

/// Every execution on `stack_name`, from its Step Functions history, with
/// the span it was past AcquireLock; asserts no two spans overlap.
async fn assert_one_holder_at_a_time(stack: &TestStack, stack_name: &str) -> Vec<Holding> {
    let states = lock_states();
    let executions = stack.executions().await;
    let mut holdings = Vec::new();
    for execution in &executions {
        let arn = execution.execution_arn();
        let described = stack
            .sfn()
            .describe_execution()
            .execution_arn(arn)
            .send()
            .await
            .expect("DescribeExecution");
        let input: Value = serde_json::from_str(described.input().unwrap_or("{}")).unwrap();
        if input["stack_name"] != stack_name {
            continue;
        }
        let events = stack.execution_history(arn).await;
        let Some(&from) = entered(&events, &states.after_acquire).first() else {
            continue;
        };
        let until = states
            .releases
            .iter()
            .flat_map(|r| entered(&events, r))
            .fold(f64::NAN, f64::min);
        assert!(!until.is_nan(), "{arn} took the lock and never released it");
        holdings.push(Holding {
            sk: input["build"]["sk"].as_str().unwrap().to_owned(),
            from,
            until,
        });
    }
    holdings.sort_by(|a, b| a.from.total_cmp(&b.from));
    for pair in holdings.windows(2) {
        assert!(
            pair[0].until <= pair[1].from,
            "two executions past AcquireLock on {stack_name} at once: {pair:?}"
        );
    }
    holdings
}

fn holding<'a>(holdings: &'a [Holding], build: &Build) -> &'a Holding {
    holdings
        .iter()
        .find(|h| h.sk == build.sk)
        .unwrap_or_else(|| panic!("build {} never held the lock: {holdings:?}", build.sk))
}

async fn deployed_greeting(stack: &TestStack) -> Option<String> {
    let (_, params) = stack.stack("dev-shop").await?;
    param(&params, "Greeting")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_build_waits_for_the_lock_an_older_one_holds_then_deploys() {
    let stack = paced_stack("dev", &[]).await;
    let older = stack.upload_sample("shop", "1.aaaa", "older").await;
    wait_lock_attribute(&stack, "holder_sk", &older.sk).await;
    let newer = stack.upload_sample("shop", "2.bbbb", "newer").await;
    assert!(newer.sk > older.sk, "{} > {}", newer.sk, older.sk);

    let (older, older_history) = ended(&stack, &older.key()).await;
    let (newer, newer_history) = ended(&stack, &newer.key()).await;
    settle(&stack).await;
    assert_eq!(older.status, BuildStatus::Success, "{older_history:?}");
    assert_eq!(newer.status, BuildStatus::Success, "{newer_history:?}");
    assert_eq!(deployed_greeting(&stack).await.as_deref(), Some("newer"));
    let lock = lock_item(&stack, "dev-shop").await;
    assert_eq!(lock.get("deployed_sk"), Some(&newer.sk));
    assert_eq!(lock.get("holder_sk"), None, "released");

    // The newer build waited while the older one held the lock, and says so.
    let holdings = assert_one_holder_at_a_time(&stack, "dev-shop").await;
    let (held_by_older, held_by_newer) = (holding(&holdings, &older), holding(&holdings, &newer));
    let waits = entered(
        &stack
            .execution_history(newer.execution_arn.as_ref().unwrap())
            .await,
        "WaitForLock",
    );
    assert!(!waits.is_empty(), "the newer build never waited");
    assert!(
        waits[0] > held_by_older.from && waits[0] < held_by_older.until,
        "it waited while the older build held the lock: {waits:?} {held_by_older:?}"
    );
    assert!(held_by_newer.from >= held_by_older.until);
    assert_eq!(
        statuses(&newer_history),
        [
            BuildStatus::Pending,
            BuildStatus::InProgress,
            BuildStatus::InProgress,
            BuildStatus::Success
        ],
        "{newer_history:?}"
    );
    assert_eq!(
        newer_history[2].reason,
        format!(
            "waiting for the lock on stack dev-shop, held by build {}",
            older.sk
        )
    );
    assert!(
        newer_history[3]
            .reason
            .starts_with("deployed version 2.bbbb to stack dev-shop (UPDATE_COMPLETE"),
        "{newer_history:?}"
    );
    assert_eq!(
        statuses(&older_history),
        [
            BuildStatus::Pending,
            BuildStatus::InProgress,
            BuildStatus::Success
        ],
        "{older_history:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_three_queued_builds_the_middle_one_is_superseded() {
    let stack = paced_stack("dev", &[]).await;
    let faults = stack.emulator.faults();
    let first = stack.upload_sample("shop", "1.aaaa", "first").await;
    wait_lock_attribute(&stack, "holder_sk", &first.sk).await;

    // The middle build's first look at the lock (ReadLock, the machine's only
    // GetItem; the first build holds the lock and never reads it) is held
    // back until the first has finished and the last has taken the lock.
    let hold = Duration::from_secs(20);
    faults
        .add(
            FaultRule::new(
                Caller::StateMachine,
                "dynamodb",
                "GetItem",
                FaultKind::Delay(hold),
            )
            .named("hold the middle build's ReadLock")
            .times(1),
        )
        .await
        .unwrap();
    let middle = stack.upload_sample("shop", "2.bbbb", "middle").await;
    wait_until(
        "the middle build's ReadLock",
        Duration::from_secs(30),
        || async { Ok((!faults.injected().await?.is_empty()).then_some(())) },
    )
    .await
    .unwrap();
    let held_at = Instant::now();
    let last = stack.upload_sample("shop", "3.cccc", "last").await;
    wait_lock_attribute(&stack, "last_started_sk", &last.sk).await;
    assert!(
        held_at.elapsed() < hold,
        "the last build took the lock only after the middle one looked again"
    );

    let (first, first_history) = ended(&stack, &first.key()).await;
    let (middle, middle_history) = ended(&stack, &middle.key()).await;
    let (last, last_history) = ended(&stack, &last.key()).await;
    settle(&stack).await;
    assert_eq!(first.status, BuildStatus::Success, "{first_history:?}");
    assert_eq!(middle.status, BuildStatus::Superseded, "{middle_history:?}");
    assert_eq!(last.status, BuildStatus::Success, "{last_history:?}");
    let superseded = format!("superseded by newer build {}", last.sk);
    assert_eq!(middle.error_msg.as_deref(), Some(superseded.as_str()));
    assert_eq!(
        statuses(&middle_history),
        [
            BuildStatus::Pending,
            BuildStatus::InProgress,
            BuildStatus::Superseded
        ],
        "{middle_history:?}"
    );
    assert_eq!(middle_history[2].reason, superseded);
    assert_eq!(deployed_greeting(&stack).await.as_deref(), Some("last"));
    assert_eq!(
        lock_item(&stack, "dev-shop").await.get("deployed_sk"),
        Some(&last.sk)
    );

    let holdings = assert_one_holder_at_a_time(&stack, "dev-shop").await;
    let order: Vec<&str> = holdings.iter().map(|h| h.sk.as_str()).collect();
    assert_eq!(
        order,
        [first.sk.as_str(), last.sk.as_str()],
        "the middle build never held the lock"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_that_waits_too_long_for_the_lock_fails_naming_the_holder() {
    // The holder waits for an approval (prd), holding the lock without a
    // polling loop of its own; the waiter gives up after PollMaxAttempts.
    let stack = TestStack::start(
        "prd",
        &[("ApprovalTimeoutSeconds", "300"), ("PollMaxAttempts", "3")],
    )
    .await;
    let holder = stack.upload_sample("shop", "1.aaaa", "held").await;
    let holder = stack
        .wait_for(&holder.key(), BuildStatus::AwaitingApproval)
        .await;
    assert_eq!(holder.status, BuildStatus::AwaitingApproval, "{holder:?}");
    let waiter = stack.upload_sample("shop", "2.bbbb", "waited").await;

    let (waiter, waiter_history) = ended(&stack, &waiter.key()).await;
    let reason = format!("timed out waiting for lock held by build {}", holder.sk);
    assert_eq!(waiter.status, BuildStatus::Failed, "{waiter_history:?}");
    assert_eq!(waiter.error_msg.as_deref(), Some(reason.as_str()));
    assert_eq!(
        statuses(&waiter_history),
        [
            BuildStatus::Pending,
            BuildStatus::InProgress,
            BuildStatus::InProgress,
            BuildStatus::Failed
        ],
        "{waiter_history:?}"
    );
    assert_eq!(waiter_history[3].reason, reason);
    let waits = entered(
        &stack
            .execution_history(waiter.execution_arn.as_ref().unwrap())
            .await,
        "WaitForLock",
    );
    assert_eq!(waits.len(), 2, "three attempts, two waits between them");

    // The holder still deploys once approved.
    wait_until("the approval token", Duration::from_secs(30), || async {
        let build = stack.builds().get(&holder.key()).await?.expect("build");
        Ok(build.approval_token.map(|_| ()))
    })
    .await
    .unwrap();
    let out = stack.deployer(&["approve", "shop", &holder.sk]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (holder, _) = ended(&stack, &holder.key()).await;
    settle(&stack).await;
    assert_eq!(holder.status, BuildStatus::Success);
    let (_, params) = stack.stack("prd-shop").await.unwrap();
    assert_eq!(param(&params, "Greeting").as_deref(), Some("held"));
    assert_one_holder_at_a_time(&stack, "prd-shop").await;
}

/// The `{upload time}` part of a build key: `u20261123T100000123Z…`.
fn key_second(sk: &str) -> &str {
    &sk[..16]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_uploads_in_the_same_second_end_on_the_newer_version() {
    let stack = paced_stack("dev", &[]).await;
    let s3 = stack.pipeline.s3();
    let bucket = stack.pipeline.resources.bucket.clone();
    for version in ["1.aaaa", "2.bbbb"] {
        s3.put_object()
            .bucket(&bucket)
            .key(format!("shop/main/{version}/cloudformation.template"))
            .body(sample_template().into_bytes().into())
            .send()
            .await
            .unwrap();
    }
    // The newer build's execution starts a moment after the older one's, so
    // the older takes the lock first: the order in which, with second-
    // resolution keys, a random older key could supersede the newer build.
    let trigger_build = stack.pipeline.trigger_build.name().to_owned();
    stack
        .emulator
        .faults()
        .add(
            FaultRule::new(
                Caller::function(&trigger_build),
                "states",
                "StartExecution",
                FaultKind::Delay(Duration::from_secs(2)),
            )
            .after(1)
            .times(1),
        )
        .await
        .unwrap();
    // Both trigger files early in one second.
    let into_second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_millis();
    tokio::time::sleep(Duration::from_millis(u64::from(1000 - into_second))).await;
    for (version, greeting) in [("1.aaaa", "older"), ("2.bbbb", "newer")] {
        s3.put_object()
            .bucket(&bucket)
            .key(format!("shop/main/{version}/cloudformation-params.json"))
            .body(
                json!({ "Greeting": greeting })
                    .to_string()
                    .into_bytes()
                    .into(),
            )
            .send()
            .await
            .unwrap();
    }
    let older = stack.build_of("shop", "1.aaaa").await;
    let newer = stack.build_of("shop", "2.bbbb").await;
    assert_eq!(
        key_second(&older.sk),
        key_second(&newer.sk),
        "uploaded in one second: {} {}",
        older.sk,
        newer.sk
    );
    assert!(newer.sk > older.sk, "{} > {}", newer.sk, older.sk);

    let (older, older_history) = ended(&stack, &older.key()).await;
    let (newer, newer_history) = ended(&stack, &newer.key()).await;
    settle(&stack).await;
    assert_eq!(older.status, BuildStatus::Success, "{older_history:?}");
    assert_eq!(newer.status, BuildStatus::Success, "{newer_history:?}");
    assert!(
        newer_history
            .iter()
            .any(|c| c.reason.ends_with(&format!("held by build {}", older.sk))),
        "the newer build waited for the older one: {newer_history:?}"
    );
    assert_eq!(deployed_greeting(&stack).await.as_deref(), Some("newer"));
    assert_eq!(
        lock_item(&stack, "dev-shop").await.get("deployed_sk"),
        Some(&newer.sk)
    );
    let holdings = assert_one_holder_at_a_time(&stack, "dev-shop").await;
    let order: Vec<&str> = holdings.iter().map(|h| h.sk.as_str()).collect();
    assert_eq!(order, [older.sk.as_str(), newer.sk.as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_notification_from_the_same_millisecond_loses_to_the_higher_build_number() {
    let stack = TestStack::start("dev", &[]).await;
    // Artifacts in the artifact bucket (the only one s3-trigger's role may
    // read) with its notifications off: the test delivers the S3 events
    // itself, the newer version's first, both stamped with the same
    // millisecond (S3 delivers at least once and in no set order).
    let bucket = stack.pipeline.resources.bucket.as_str();
    let s3 = stack.pipeline.s3();
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(aws_sdk_s3::types::NotificationConfiguration::builder().build())
        .send()
        .await
        .unwrap();
    for (version, greeting) in [("1.aaaa", "older"), ("2.bbbb", "newer")] {
        for (file, body) in [
            ("cloudformation.template", sample_template()),
            (
                "cloudformation-params.json",
                json!({ "Greeting": greeting }).to_string(),
            ),
        ] {
            s3.put_object()
                .bucket(bucket)
                .key(format!("shop/main/{version}/{file}"))
                .body(body.into_bytes().into())
                .send()
                .await
                .unwrap();
        }
    }
    let deliver = |version: &str| {
        let mut event = s3_put_event(
            bucket,
            &format!("shop/main/{version}/cloudformation-params.json"),
        );
        event["Records"][0]["eventTime"] = json!("2026-11-23T10:00:00.123Z");
        let function = stack.pipeline.s3_trigger.clone();
        async move {
            let report = function.invoke(&event).await.unwrap();
            assert_eq!(
                report["created"].as_array().map(Vec::len),
                Some(1),
                "{report}"
            );
        }
    };
    deliver("2.bbbb").await;
    let newer = stack.build_of("shop", "2.bbbb").await;
    wait_lock_attribute(&stack, "last_started_sk", &newer.sk).await;
    deliver("1.aaaa").await;
    let older = stack.build_of("shop", "1.aaaa").await;
    assert_eq!(&older.sk[..20], &newer.sk[..20], "the same millisecond");
    assert!(newer.sk > older.sk, "{} > {}", newer.sk, older.sk);

    let (older, older_history) = ended(&stack, &older.key()).await;
    let (newer, newer_history) = ended(&stack, &newer.key()).await;
    settle(&stack).await;
    assert_eq!(newer.status, BuildStatus::Success, "{newer_history:?}");
    assert_eq!(older.status, BuildStatus::Superseded, "{older_history:?}");
    assert_eq!(
        older.error_msg,
        Some(format!("superseded by newer build {}", newer.sk))
    );
    assert_eq!(deployed_greeting(&stack).await.as_deref(), Some("newer"));
    let holdings = assert_one_holder_at_a_time(&stack, "dev-shop").await;
    assert_eq!(holdings.len(), 1, "{holdings:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_racing_for_one_stack_never_run_past_the_lock_together() {
    let stack = TestStack::start_configured("dev", &[], |options| {
        options.cloudformation_pace = Duration::from_secs(1);
    })
    .await;
    let versions = ["1.aaaa", "2.bbbb", "3.cccc", "4.dddd"];
    for (n, version) in versions.iter().enumerate() {
        stack
            .upload(
                "shop",
                "main",
                version,
                &sample_template(),
                json!({ "Greeting": format!("build {}", n + 1) }),
            )
            .await;
    }
    let mut builds = Vec::new();
    for version in versions {
        let build = stack.build_of("shop", version).await;
        builds.push(ended(&stack, &build.key()).await.0);
    }
    settle(&stack).await;
    let sks: Vec<&str> = builds.iter().map(|b| b.sk.as_str()).collect();
    assert!(sks.windows(2).all(|w| w[0] < w[1]), "upload order: {sks:?}");
    let newest = builds.last().unwrap();
    assert_eq!(newest.status, BuildStatus::Success, "{newest:?}");
    for build in &builds {
        // Which of the older builds deploy and which are superseded depends
        // on how the executions interleave; none fails on a busy stack.
        assert!(
            matches!(build.status, BuildStatus::Success | BuildStatus::Superseded),
            "{build:?}"
        );
    }
    assert_eq!(deployed_greeting(&stack).await.as_deref(), Some("build 4"));
    let holdings = assert_one_holder_at_a_time(&stack, "dev-shop").await;
    let held: Vec<&str> = holdings.iter().map(|h| h.sk.as_str()).collect();
    assert!(
        held.windows(2).all(|w| w[0] < w[1]),
        "the lock never goes to an older build: {held:?}"
    );
    for build in &builds {
        assert_eq!(
            held.contains(&build.sk.as_str()),
            build.status == BuildStatus::Success,
            "a build deploys exactly when it held the lock: {build:?}"
        );
    }
}

/// Reads `watch`'s stdout, noting when each line arrived.
async fn read_lines(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    seen: &mut Vec<(Instant, String)>,
    until: impl Fn(&str) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = until(&line);
            seen.push((Instant::now(), line));
            if done {
                return;
            }
        }
        panic!("watch ended early: {seen:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("watch printed no matching line: {seen:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployer_builds_watch_prints_a_transition_that_happened_between_two_polls() {
    let stack = TestStack::start("prd", &[("ApprovalTimeoutSeconds", "300")]).await;
    let build = stack.upload_sample("shop", "1.aaaa", "watched").await;
    wait_until("the approval token", Duration::from_secs(60), || async {
        let b = stack.builds().get(&build.key()).await?.expect("build");
        Ok(b.approval_token.map(|_| ()))
    })
    .await
    .unwrap();

    let interval = Duration::from_secs(10);
    let cli = deployer_e2e::target_dir().join("debug").join("deployer");
    let mut watch = tokio::process::Command::new(&cli)
        .args(["builds", "watch", "shop", &build.sk, "--interval"])
        .arg(interval.as_secs().to_string())
        .envs(stack.pipeline.cli_env())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("deployer builds watch");
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    read_lines(&mut lines, &mut seen, |l| l.contains("AWAITING_APPROVAL")).await;
    let first_read = seen.last().unwrap().0;

    // Approved and deployed before watch reads again: at its next read the
    // status has gone from AWAITING_APPROVAL to SUCCESS.
    let out = stack
        .deployer(&["approve", "shop", &build.sk, "--by", "alice"])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = stack.wait_terminal(&build.key()).await;
    assert_eq!(done.status, BuildStatus::Success);
    let deployed_at = Instant::now();
    assert!(
        deployed_at < first_read + interval,
        "the deploy took longer than watch's interval; nothing happened between two reads"
    );

    read_lines(&mut lines, &mut seen, |l| l.contains("SUCCESS")).await;
    let mut hints = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut watch.stderr.take().unwrap(), &mut hints)
        .await
        .unwrap();
    let status = watch.wait().await.unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        hints.trim_end(),
        format!(
            "waiting for approval: deployer approve shop {} --env prd   (or: deployer reject ...)",
            build.sk
        ),
        "the approval hint, once, on stderr"
    );
    let printed: Vec<&str> = seen.iter().map(|(_, l)| l.as_str()).collect();
    let approved = seen
        .iter()
        .position(|(_, l)| l.contains("IN_PROGRESS") && l.contains("approved by alice"))
        .unwrap_or_else(|| panic!("no line for the approval: {printed:#?}"));
    assert!(
        seen[approved].0 > deployed_at,
        "printed from the history after the build had moved on: {printed:#?}"
    );
    let order: Vec<&str> = printed
        .iter()
        .map(|l| {
            ["PENDING", "IN_PROGRESS", "AWAITING_APPROVAL", "SUCCESS"]
                .into_iter()
                .find(|s| l.contains(&format!(" {s} ")))
                .unwrap_or_else(|| panic!("a line without a status: {l}"))
        })
        .collect();
    assert_eq!(
        order,
        [
            "PENDING",
            "IN_PROGRESS",
            "AWAITING_APPROVAL",
            "IN_PROGRESS",
            "SUCCESS"
        ],
        "{printed:#?}"
    );
    for line in &printed {
        assert!(line.contains(&format!("shop/prd/{}", build.sk)), "{line}");
    }
}
