//! builddao against DynamoDB (moto): idempotent create, newest-first
//! pagination, conditional transitions, each recorded in the build's history.

use builddao::{BuildStatus, Created, Transition};
use deployer_e2e::{ledger_build, TestStack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_store_creates_once_lists_newest_first_and_never_leaves_a_terminal_status() {
    let stack = TestStack::start("dev", &[]).await;
    let store = stack.builds();
    let mut keys = Vec::new();
    for n in 1..=5u64 {
        let build = ledger_build(n, "nowhere").into_build(ledger::now_rfc3339());
        assert!(matches!(
            store.create(&build).await.unwrap(),
            Created::New(_)
        ));
        assert!(matches!(
            store.create(&build).await.unwrap(),
            Created::AlreadyExists(_)
        ));
        keys.push(build.key());
    }

    let first = store.list("ledger", "dev", 2, None).await.unwrap();
    let versions: Vec<_> = first.builds.iter().map(|b| b.version.clone()).collect();
    assert_eq!(versions, ["5.abcd", "4.abcd"]);
    let second = store
        .list("ledger", "dev", 2, first.next.as_deref())
        .await
        .unwrap();
    let versions: Vec<_> = second.builds.iter().map(|b| b.version.clone()).collect();
    assert_eq!(versions, ["3.abcd", "2.abcd"]);
    assert_eq!(
        store
            .latest("ledger", "dev")
            .await
            .unwrap()
            .unwrap()
            .version,
        "5.abcd"
    );

    // These records are not real deployments: wait for trigger-build to have
    // had its go at them (it fails them: the artifacts do not exist).
    for key in &keys {
        stack.wait_terminal(key).await;
    }
    let key = &keys[0];
    let now = ledger::now_rfc3339();
    let tracked = store.get_tracked(key).await.unwrap().unwrap();
    let status = tracked.build.status;
    assert!(status.is_terminal());
    // The history holds every change, the upload first and the ending last.
    let history = &tracked.transitions;
    assert_eq!(history[0].status, BuildStatus::Pending, "{history:?}");
    assert_eq!(
        history[0].reason,
        "uploaded to s3://nowhere/ledger/main/1.abcd/"
    );
    assert_eq!(history.last().unwrap().status, status, "{history:?}");
    assert!(
        history.iter().any(|c| c.status == BuildStatus::InProgress),
        "{history:?}"
    );
    for to in [
        BuildStatus::InProgress,
        BuildStatus::Success,
        BuildStatus::Failed,
    ] {
        let outcome = store
            .transition(key, &BuildStatus::ALL, to, "by hand", &now, &[])
            .await
            .unwrap();
        assert_eq!(
            outcome,
            Transition::Refused {
                current: Some(status)
            }
        );
    }
    let after = store.get_tracked(key).await.unwrap().unwrap();
    assert_eq!(
        &after.transitions, history,
        "a refused change is not recorded"
    );
    let missing = builddao::BuildKey {
        repo: "ledger".into(),
        env: "dev".into(),
        sk: "nope".into(),
    };
    assert_eq!(
        store
            .mark_failed(&missing, &[BuildStatus::Pending], "x", &now)
            .await
            .unwrap(),
        Transition::Refused { current: None }
    );
}
