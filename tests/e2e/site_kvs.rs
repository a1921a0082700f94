//! The CloudFront KeyValueStore the router reads: the local stack's double
//! takes only SigV4A-signed requests with the caller's key, the real
//! site-build binary moves it on publish, rollback and preview removal,
//! and the site server serves what it names. IAM is checked as AWS would
//! (by the caller's role), a throttled write is retried, and racing
//! publishes that reach the store out of order leave it naming the S3
//! pointer's deploy.

use std::time::{Duration, SystemTime};

use aws_sdk_cloudfrontkeyvaluestore as kvs_sdk;
use deployer_e2e::TestStack;
use local_stack::kvs::{KvsDouble, KvsFault, SIGV4A};
use local_stack::{HostTarget, SampleRepo};
use reqwest::Method;
use site_build::live_store::LiveStore;
use site_build::Publisher;
use sitedao::PublishTarget;

/// The double's DescribeKeyValueStore URL for its own store.
fn describe_url(kvs: &KvsDouble) -> String {
    let arn: String = kvs
        .arn
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect();
    format!("{}/key-value-stores/{arn}", kvs.url())
}

/// A GET of `url` signed by aws-sigv4 itself (SigV4A or SigV4), as a client
/// that is not the KVS SDK would sign it.
fn signed_get(url: &str, v4a: bool, secret: &str) -> reqwest::RequestBuilder {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let identity = kvs_sdk::config::Credentials::new("testing", secret, None, None, "test").into();
    let settings = SigningSettings::default();
    let params = if v4a {
        aws_sigv4::sign::v4a::SigningParams::builder()
            .identity(&identity)
            .region_set("*")
            .name("cloudfront-keyvaluestore")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .unwrap()
            .into()
    } else {
        aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("cloudfront-keyvaluestore")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .unwrap()
            .into()
    };
    let host = url.trim_start_matches("http://").split('/').next().unwrap();
    let headers = [("host", host)];
    let request =
        SignableRequest::new("GET", url, headers.into_iter(), SignableBody::Bytes(&[])).unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    let mut builder = reqwest::Client::new().get(url);
    for (name, value) in instructions.headers() {
        builder = builder.header(name, value);
    }
    builder
}

/// Status, error code and message of a refused request.
async fn refusal(request: reqwest::RequestBuilder) -> (u16, String, String) {
    let response = request.send().await.expect("the double answers");
    let status = response.status().as_u16();
    let code = response
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, code, response.text().await.unwrap())
}

/// A KVS SDK client as the operator (the harness's credentials).
fn operator_client(stack: &TestStack) -> kvs_sdk::Client {
    kvs_client(&stack.pipeline.kvs, &stack.pipeline.sdk)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_key_value_store_takes_only_sigv4a_requests_signed_with_the_callers_key() {
    let stack = TestStack::start("kvsauth", &[]).await;
    let kvs = stack.pipeline.kvs.clone();
    let url = describe_url(&kvs);

    let (status, code, message) = refusal(reqwest::Client::new().get(&url)).await;
    assert_eq!(
        (status, code.as_str()),
        (403, "MissingAuthenticationToken"),
        "{message}"
    );

    let (status, code, message) = refusal(signed_get(&url, false, "testing")).await;
    assert_eq!(
        (status, code.as_str()),
        (403, "InvalidSignatureException"),
        "{message}"
    );
    assert!(
        message.contains(SIGV4A) && message.contains("AWS4-HMAC-SHA256"),
        "names the algorithm used and the one expected: {message}"
    );

    // SigV4A, but not with the key's secret.
    let (status, code, message) = refusal(signed_get(&url, true, "not-the-secret")).await;
    assert_eq!(
        (status, code.as_str()),
        (403, "InvalidSignatureException"),
        "{message}"
    );
    assert!(message.contains("does not match"), "{message}");
    // The same request with the right secret passes: the check is the key.
    let response = signed_get(&url, true, "testing").send().await.unwrap();
    assert_eq!(
        response.status().as_u16(),
        200,
        "{}",
        response.text().await.unwrap()
    );

    // The SDK signs with SigV4A at the account's endpoint, and the store
    // takes writes only against its current ETag.
    let client = operator_client(&stack);
    let described = client
        .describe_key_value_store()
        .kvs_arn(&kvs.arn)
        .send()
        .await
        .expect("the SDK's request is accepted");
    assert_eq!(described.kvs_arn(), kvs.arn);
    let last = kvs.calls().pop().unwrap();
    let authorization = last.authorization.unwrap_or_default();
    assert!(
        authorization.starts_with(&format!("{SIGV4A} Credential=testing/"))
            && authorization.contains("/cloudfront-keyvaluestore/aws4_request")
            && authorization.contains("x-amz-region-set"),
        "{authorization}"
    );
    let stale = described.e_tag().to_owned();
    let put = client
        .put_key()
        .kvs_arn(&kvs.arn)
        .key("staging")
        .value("deploy-a")
        .if_match(&stale)
        .send()
        .await
        .expect("a put with the current ETag");
    assert_ne!(put.e_tag(), stale, "every write changes the ETag");
    let conflict = client
        .put_key()
        .kvs_arn(&kvs.arn)
        .key("staging")
        .value("deploy-b")
        .if_match(&stale)
        .send()
        .await
        .expect_err("a stale If-Match is refused");
    assert!(
        conflict
            .as_service_error()
            .is_some_and(|e| e.is_conflict_exception()),
        "{conflict:?}"
    );
    assert_eq!(kvs.get("staging").as_deref(), Some("deploy-a"));
    let got = client
        .get_key()
        .kvs_arn(&kvs.arn)
        .key("staging")
        .send()
        .await
        .unwrap();
    assert_eq!(got.value(), "deploy-a");
    kvs.put_directly("production", "deploy-p");
    let listed = client
        .list_keys()
        .kvs_arn(&kvs.arn)
        .max_results(1)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    let listed: Vec<(&str, &str)> = listed.iter().map(|i| (i.key(), i.value())).collect();
    assert_eq!(
        listed,
        [("production", "deploy-p"), ("staging", "deploy-a")]
    );
    let etag = kvs.etag();
    client
        .delete_key()
        .kvs_arn(&kvs.arn)
        .key("staging")
        .if_match(etag)
        .send()
        .await
        .unwrap();
    assert_eq!(kvs.get("staging"), None);
}

/// Waits until the store names a deploy for `key` other than `not`.
async fn wait_for_key(kvs: &KvsDouble, key: &str, not: Option<&str>) -> String {
    local_stack::emulator::wait_until(
        &format!("the store to point {key} at a new deploy"),
        Duration::from_secs(180),
        || {
            let value = kvs.get(key).filter(|v| Some(v.as_str()) != not);
            async move { Ok(value) }
        },
    )
    .await
    .expect("the store moves")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publish_rollback_and_preview_removal_go_through_the_key_value_store() {
    let repo = SampleRepo::create(&deployer_e2e::root(), &std::env::temp_dir()).unwrap();
    let stack = TestStack::start_site("kvsflow", &repo).await;
    let pipeline = &stack.pipeline;
    let kvs = pipeline.kvs.clone();
    let repository = pipeline.site_resources.repository.clone();
    let site_build_key = pipeline
        .function_specs
        .iter()
        .find(|spec| spec.name == pipeline.site_resources.function_name)
        .and_then(|spec| spec.env.iter().find(|(k, _)| k == "AWS_ACCESS_KEY_ID"))
        .map(|(_, v)| v.clone())
        .unwrap();

    // Publish: the store names the new deploy, and the site serves it.
    repo.write("src/index.html", "<p>First edition.</p>\n")
        .unwrap();
    let first_sha = repo.commit("first").unwrap();
    let push = deployer_e2e::github_push(&repository, "main", &first_sha);
    let (status, body) = pipeline.github_webhook("push", "k-1", &push).await.unwrap();
    assert_eq!(status, 202, "{body}");
    let first = wait_for_key(&kvs, "production", None).await;
    let page =
        deployer_e2e::wait_for_page(&stack, &HostTarget::Production, "/", "First edition").await;
    assert_eq!(page.deploy_id.as_deref(), Some(first.as_str()));
    let writes: Vec<_> = kvs
        .calls()
        .into_iter()
        .filter(|c| c.access_key_id.as_deref() == Some(site_build_key.as_str()))
        .collect();
    assert!(
        writes.iter().any(|c| c.method == "PUT" && c.status == 200),
        "site-build wrote the key: {writes:?}"
    );
    assert!(
        writes
            .iter()
            .all(|c| c.algorithm.as_deref() == Some(SIGV4A) && c.status == 200),
        "every call of site-build is SigV4A and accepted: {writes:?}"
    );

    repo.write("src/index.html", "<p>Second edition.</p>\n")
        .unwrap();
    let second_sha = repo.commit("second").unwrap();
    let push = deployer_e2e::github_push(&repository, "main", &second_sha);
    pipeline.github_webhook("push", "k-2", &push).await.unwrap();
    let second = wait_for_key(&kvs, "production", Some(&first)).await;
    let page =
        deployer_e2e::wait_for_page(&stack, &HostTarget::Production, "/", "Second edition").await;
    assert_eq!(page.deploy_id.as_deref(), Some(second.as_str()));

    // Rollback: the store names the first deploy again.
    let cli = stack.deployer(&["site", "rollback", "production"]).await;
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert_eq!(kvs.get("production").as_deref(), Some(first.as_str()));
    let page = pipeline
        .site
        .get(&HostTarget::Production, "/")
        .await
        .unwrap();
    assert!(page.text().contains("First edition"), "{}", page.text());

    // The site follows the store, not the S3 pointer: point the store at
    // the second deploy behind the publisher's back.
    kvs.put_directly("production", &second);
    let page = pipeline
        .site
        .get(&HostTarget::Production, "/")
        .await
        .unwrap();
    assert_eq!(page.deploy_id.as_deref(), Some(second.as_str()));
    assert!(page.text().contains("Second edition"), "{}", page.text());
    let pointer = site_build::Publisher::new(pipeline.s3(), &pipeline.site_resources.bucket)
        .live(&PublishTarget::Production)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pointer.deploy_id, first, "the S3 pointer was not moved");
    // A value that is no deploy id: the router's 404.
    kvs.put_directly("production", "../../etc");
    let page = pipeline
        .site
        .get(&HostTarget::Production, "/")
        .await
        .unwrap();
    assert_eq!(page.status, 404, "{}", page.text());

    // A preview: its key comes with the pull request and goes with it.
    let branch = "feature/kvs";
    repo.branch(branch).unwrap();
    repo.write("src/index.html", "<p>Preview edition.</p>\n")
        .unwrap();
    let preview_sha = repo.commit("preview").unwrap();
    let slug = sitedao::PreviewSlug::from_branch(branch).to_string();
    let key = format!("preview/{slug}");
    let opened = deployer_e2e::github_pull_request(&repository, "opened", 3, branch, &preview_sha);
    pipeline
        .github_webhook("pull_request", "k-3", &opened)
        .await
        .unwrap();
    let preview_deploy = wait_for_key(&kvs, &key, None).await;
    let preview = HostTarget::Preview(slug.clone());
    let page = deployer_e2e::wait_for_page(&stack, &preview, "/", "Preview edition").await;
    assert_eq!(page.deploy_id.as_deref(), Some(preview_deploy.as_str()));
    let closed = deployer_e2e::github_pull_request(&repository, "closed", 3, branch, &preview_sha);
    pipeline
        .github_webhook("pull_request", "k-4", &closed)
        .await
        .unwrap();
    local_stack::emulator::wait_until("the preview's key to go", Duration::from_secs(120), || {
        let gone = kvs.get(&key).is_none();
        async move { Ok(gone.then_some(())) }
    })
    .await
    .expect("removal deletes the key");
    let page = pipeline.site.get(&preview, "/").await.unwrap();
    assert_eq!(page.status, 404);
    assert_eq!(page.text(), format!("Nothing is published for {key}\n"));
}

/// Status and error code of every PutKey the double answered, in order.
fn put_outcomes(kvs: &KvsDouble) -> Vec<(u16, Option<String>)> {
    kvs.calls()
        .into_iter()
        .filter(|c| c.method == "PUT")
        .map(|c| (c.status, c.error))
        .collect()
}

/// A KVS SDK client signing with `config`'s credentials, at the double.
fn kvs_client(kvs: &KvsDouble, config: &aws_config::SdkConfig) -> kvs_sdk::Client {
    kvs_sdk::Client::from_conf(
        kvs_sdk::config::Builder::from(config)
            .endpoint_url(kvs.endpoint_url())
            .build(),
    )
}

/// site-build's LiveStore and Publisher, signing as its role does.
async fn site_build_clients(stack: &TestStack) -> (LiveStore, Publisher) {
    let p = &stack.pipeline;
    let config = p.function_sdk_config("SiteBuildFunction").await.unwrap();
    (
        LiveStore::new(kvs_client(&p.kvs, &config), &p.kvs.arn),
        Publisher::new(aws_sdk_s3::Client::new(&config), &p.site_resources.bucket),
    )
}

/// A one-page site under the system's temporary folder.
fn site_dir(label: &str, page: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kvs-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), page).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_publishes_reaching_the_store_out_of_order_leave_it_on_the_s3_pointers_deploy() {
    let stack = TestStack::start("kvsrace", &[]).await;
    let kvs = stack.pipeline.kvs.clone();
    let (store, publisher) = site_build_clients(&stack).await;
    let target = PublishTarget::Staging;
    let older_site = site_dir("older", "<h1>older</h1>");
    let newer_site = site_dir("newer", "<h1>newer</h1>");

    // The older publish switches S3, then its store write is held after
    // it read the store's ETag and the S3 pointer (naming its deploy) ...
    let older = publisher.publish(&target, &older_site).await.unwrap();
    kvs.fault_next(Method::PUT, KvsFault::Hold(Duration::from_secs(2)));
    let older_sync = tokio::spawn({
        let (store, publisher, target) = (store.clone(), publisher.clone(), target.clone());
        async move { store.sync(&publisher, &target).await }
    });
    local_stack::emulator::wait_until(
        "the older write to be held",
        Duration::from_secs(10),
        || {
            let kvs = kvs.clone();
            async move { Ok((kvs.holding() == 1).then_some(())) }
        },
    )
    .await
    .unwrap();
    // ... while the newer publish switches S3 and writes the store first.
    let newer = publisher.publish(&target, &newer_site).await.unwrap();
    assert_eq!(newer.previous.as_deref(), Some(older.deploy_id.as_str()));
    assert_eq!(
        store.sync(&publisher, &target).await.unwrap().as_deref(),
        Some(newer.deploy_id.as_str())
    );
    assert_eq!(kvs.holding(), 1, "the older write is still held");

    // The older write lands last: refused on its stale ETag, it reads the
    // pointer again and follows it.
    let older_wrote = older_sync.await.unwrap().unwrap();
    assert_eq!(older_wrote.as_deref(), Some(newer.deploy_id.as_str()));
    assert_eq!(
        kvs.get("staging").as_deref(),
        Some(newer.deploy_id.as_str())
    );
    let puts = put_outcomes(&kvs);
    assert_eq!(
        puts,
        [
            (200, None),
            (409, Some("ConflictException".to_owned())),
            (200, None)
        ],
        "the newer write, the held older one refused, its retry"
    );
    let _ = std::fs::remove_dir_all(older_site);
    let _ = std::fs::remove_dir_all(newer_site);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_key_value_store_lets_in_only_what_each_role_allows_and_a_throttled_write_is_retried() {
    let stack = TestStack::start("kvsiam", &[]).await;
    let p = &stack.pipeline;
    let kvs = p.kvs.clone();
    let client_as = |config: &aws_config::SdkConfig| kvs_client(&kvs, config);

    // The builder runs repository code: its role has no KVS action at all.
    let builder = client_as(&p.function_sdk_config("SiteBuilderFunction").await.unwrap());
    let denied = builder
        .describe_key_value_store()
        .kvs_arn(&kvs.arn)
        .send()
        .await
        .expect_err("the builder's role is refused");
    let message = format!("{}", aws_sdk_s3::error::DisplayErrorContext(&denied));
    assert!(
        message.contains("AccessDeniedException")
            && message.contains("cloudfront-keyvaluestore:DescribeKeyValueStore"),
        "{message}"
    );

    // site-build's role: what the template grants (describe, put, delete),
    // and nothing else.
    let site_build = client_as(&p.function_sdk_config("SiteBuildFunction").await.unwrap());
    site_build
        .describe_key_value_store()
        .kvs_arn(&kvs.arn)
        .send()
        .await
        .expect("site-build may describe the store");
    kvs.put_directly("production", "deploy-p");
    let denied = site_build
        .get_key()
        .kvs_arn(&kvs.arn)
        .key("production")
        .send()
        .await
        .expect_err("GetKey is not granted");
    let message = format!("{}", aws_sdk_s3::error::DisplayErrorContext(&denied));
    assert!(
        message.contains("AccessDeniedException")
            && message.contains("cloudfront-keyvaluestore:GetKey"),
        "{message}"
    );

    // A throttled write: the SDK retries, the store follows the pointer.
    let (store, publisher) = site_build_clients(&stack).await;
    let site = site_dir("throttled", "<h1>throttled</h1>");
    let published = publisher
        .publish(&PublishTarget::Production, &site)
        .await
        .unwrap();
    kvs.fault_next(Method::PUT, KvsFault::Throttle);
    assert_eq!(
        store
            .sync(&publisher, &PublishTarget::Production)
            .await
            .unwrap()
            .as_deref(),
        Some(published.deploy_id.as_str())
    );
    let puts = put_outcomes(&kvs);
    assert_eq!(
        puts,
        [(429, Some("ThrottlingException".to_owned())), (200, None)]
    );
    let _ = std::fs::remove_dir_all(site);
}
