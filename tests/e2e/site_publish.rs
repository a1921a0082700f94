//! site-build's publisher against S3 (moto): headers on every file,
//! unchanged sites write nothing, one changed file uploads one file,
//! readers only ever see complete deploys, rollback without uploads (to the
//! previous deploy or any kept one), retention, racing publishes of one
//! target (the newer deployment wins), removal of a closed PR's preview,
//! and what each deploy costs in S3 requests, counted by the emulator.
//! The publisher never calls CloudFront (see tests/e2e/site_router.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use local_stack::{Caller, Emulator};
use site_build::{PruneOutcome, PublishError, PublishOutcome, Publisher};
use sitedao::{new_deploy_id, PublishTarget};

use aws_sdk_s3::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::operation::copy_object::CopyObjectInput;
use aws_sdk_s3::operation::put_object::PutObjectInput;

const BUCKET: &str = "site-bucket";

/// Every PutObject and CopyObject the publisher sends, by destination key.
/// Recorded in the client, before serialisation, so an SDK retry of one
/// call is still one call.
#[derive(Debug, Default)]
struct WriteLog {
    writes: Mutex<Vec<(&'static str, String)>>,
}

impl WriteLog {
    fn take(&self) -> Vec<(&'static str, String)> {
        std::mem::take(&mut *self.writes.lock().unwrap())
    }
}

#[derive(Debug, Clone)]
struct RecordWrites(Arc<WriteLog>);

impl Intercept for RecordWrites {
    fn name(&self) -> &'static str {
        "RecordWrites"
    }

    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let input = context.input();
        let write = if let Some(put) = input.downcast_ref::<PutObjectInput>() {
            Some(("PutObject", put.key().unwrap_or_default().to_owned()))
        } else {
            input
                .downcast_ref::<CopyObjectInput>()
                .map(|copy| ("CopyObject", copy.key().unwrap_or_default().to_owned()))
        };
        if let Some(write) = write {
            self.0.writes.lock().unwrap().push(write);
        }
        Ok(())
    }
}

/// One emulator with the site bucket.
struct SiteStack {
    emulator: Emulator,
    s3: aws_sdk_s3::Client,
    writes: Arc<WriteLog>,
}

impl SiteStack {
    async fn start() -> Self {
        let emulator = Emulator::start(&deployer_e2e::root(), None)
            .await
            .expect("moto server starts");
        let sdk = emulator.sdk_config().await;
        let writes = Arc::new(WriteLog::default());
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .interceptor(RecordWrites(writes.clone()))
                .build(),
        );
        s3.create_bucket()
            .bucket(BUCKET)
            .send()
            .await
            .expect("CreateBucket");
        Self {
            emulator,
            s3,
            writes,
        }
    }

    fn publisher(&self) -> Publisher {
        Publisher::new(self.s3.clone(), BUCKET)
    }

    /// The S3 requests that reached the emulator from this test (the
    /// administrator's), by operation, since the last call: every attempt.
    async fn requests(&self, before: &mut BTreeMap<String, u64>) -> BTreeMap<String, u64> {
        let now = self
            .emulator
            .faults()
            .calls_to(&Caller::Admin, "s3")
            .await
            .expect("the fault engine's call counts");
        let delta = now
            .iter()
            .filter_map(|(op, n)| {
                let was = before.get(op).copied().unwrap_or(0);
                (*n > was).then(|| (op.clone(), n - was))
            })
            .collect();
        *before = now;
        delta
    }

    /// Keys written by PutObject / CopyObject since the last call, sorted.
    fn writes(&self) -> (Vec<String>, Vec<String>) {
        let mut puts = Vec::new();
        let mut copies = Vec::new();
        for (operation, key) in self.writes.take() {
            match operation {
                "PutObject" => puts.push(key),
                _ => copies.push(key),
            }
        }
        puts.sort();
        copies.sort();
        (puts, copies)
    }

    async fn body(&self, key: &str) -> String {
        let object = self
            .s3
            .get_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetObject {key}: {e:?}"));
        let bytes = object.body.collect().await.unwrap().into_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// The content a viewer of `target` gets for `path`.
    async fn view(&self, target: &PublishTarget, path: &str) -> String {
        let resolved = self
            .publisher()
            .resolve(target, path)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{path} does not resolve"));
        self.body(&resolved.key).await
    }

    async fn keys_under(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.expect("ListObjectsV2");
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        keys
    }
}

/// A built site in a temporary folder, deleted when dropped (also when a
/// test fails).
struct TempSite {
    root: PathBuf,
}

impl TempSite {
    fn new(label: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "site-publish-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("temporary site folder");
        Self { root }
    }

    fn with(label: &str, files: &[(&str, &str)]) -> Self {
        let site = Self::new(label);
        for (path, content) in files {
            site.write(path, content);
        }
        site
    }

    fn write(&self, path: &str, content: &str) {
        let file = self.root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }

    fn delete(&self, path: &str) {
        std::fs::remove_file(self.root.join(path)).unwrap();
    }

    fn path(&self) -> &Path {
        &self.root
    }
}

impl Drop for TempSite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// An Astro-like build: pages, hashed bundles, public assets, root manifests.
const ASTRO_SITE: &[(&str, &str)] = &[
    ("index.html", "<h1>Home</h1>"),
    ("about/index.html", "<h1>About</h1>"),
    ("über uns/index.html", "<h1>Über uns</h1>"),
    ("_astro/index.3f9a1c2b.js", "console.log('home')"),
    ("assets/app-BQ4ZtN2k.css", "body{color:#333}"),
    ("img/logo.png", "\u{89}PNG not really"),
    ("robots.txt", "User-agent: *"),
    ("sitemap.xml", "<urlset/>"),
];

fn site_keys(outcome: &PublishOutcome, paths: &[&str]) -> Vec<String> {
    let mut keys: Vec<String> = paths
        .iter()
        .map(|p| format!("{}{p}", outcome.target.deploy_prefix(&outcome.deploy_id)))
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_publish_uploads_every_file_with_its_content_type_and_cache_control() {
    let stack = SiteStack::start().await;
    let site = TempSite::with("first", ASTRO_SITE);
    let target = PublishTarget::Production;

    let outcome = stack
        .publisher()
        .publish(&target, site.path())
        .await
        .unwrap();

    assert!(!outcome.unchanged);
    assert_eq!(
        (outcome.uploaded, outcome.copied, outcome.deleted),
        (8, 0, 0)
    );
    let bytes: usize = ASTRO_SITE.iter().map(|(_, c)| c.len()).sum();
    assert_eq!(outcome.bytes_uploaded, bytes as u64);
    assert_eq!(outcome.previous, None);

    // Every file once, then the manifest, then the pointer; nothing copied.
    let (puts, copies) = stack.writes();
    let paths: Vec<&str> = ASTRO_SITE.iter().map(|(p, _)| *p).collect();
    let mut expected = site_keys(&outcome, &paths);
    expected.push(target.manifest_key(&outcome.deploy_id));
    expected.push("live/production.json".to_owned());
    expected.sort();
    assert_eq!(puts, expected);
    assert!(copies.is_empty(), "{copies:?}");

    let revalidate = "public, max-age=0, must-revalidate";
    let immutable = "public, max-age=31536000, immutable";
    let hour = "public, max-age=3600";
    for (path, content_type, cache_control) in [
        ("index.html", "text/html; charset=utf-8", revalidate),
        (
            "über uns/index.html",
            "text/html; charset=utf-8",
            revalidate,
        ),
        (
            "_astro/index.3f9a1c2b.js",
            "text/javascript; charset=utf-8",
            immutable,
        ),
        (
            "assets/app-BQ4ZtN2k.css",
            "text/css; charset=utf-8",
            immutable,
        ),
        ("img/logo.png", "image/png", hour),
        ("robots.txt", "text/plain; charset=utf-8", revalidate),
        ("sitemap.xml", "text/xml; charset=utf-8", revalidate),
    ] {
        let key = format!("{}{path}", target.deploy_prefix(&outcome.deploy_id));
        let head = stack
            .s3
            .head_object()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("HeadObject {key}: {e:?}"));
        assert_eq!(head.content_type(), Some(content_type), "{path}");
        assert_eq!(head.cache_control(), Some(cache_control), "{path}");
    }

    // Uploads carry the manifest's SHA-256 as S3 checksum (base64 of the
    // digest, computed here independently), so S3 refuses other bytes.
    let home = stack
        .s3
        .head_object()
        .bucket(BUCKET)
        .key(format!(
            "{}index.html",
            target.deploy_prefix(&outcome.deploy_id)
        ))
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(
        home.checksum_sha256(),
        Some("GnEzBnpKx/4GVllD3USHDyMgQbHSi0NA4rZ4JEo7efY=")
    );

    // The pointer names the deploy; viewers get its files.
    let live = stack.publisher().live(&target).await.unwrap().unwrap();
    assert_eq!(live.deploy_id, outcome.deploy_id);
    assert_eq!(live.manifest_key, target.manifest_key(&outcome.deploy_id));
    assert_eq!(live.previous, None);
    assert_eq!(stack.view(&target, "/").await, "<h1>Home</h1>");
    assert_eq!(stack.view(&target, "/about/").await, "<h1>About</h1>");
    assert_eq!(stack.view(&target, "/about").await, "<h1>About</h1>");
    assert_eq!(
        stack.view(&target, "/%C3%BCber%20uns/").await,
        "<h1>Über uns</h1>"
    );
    let resolved = stack
        .publisher()
        .resolve(&target, "/_astro/index.3f9a1c2b.js")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resolved.cache_control, immutable);
    assert!(stack
        .publisher()
        .resolve(&target, "/missing.html")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republishing_the_same_site_is_unchanged_and_writes_nothing() {
    let stack = SiteStack::start().await;
    let target = PublishTarget::Staging;
    let site = TempSite::with("same", ASTRO_SITE);
    let first = stack
        .publisher()
        .publish(&target, site.path())
        .await
        .unwrap();
    stack.writes();

    let again = stack
        .publisher()
        .publish(&target, site.path())
        .await
        .unwrap();
    // The same bytes built into another folder are the same site.
    let rebuilt = TempSite::with("same-rebuilt", ASTRO_SITE);
    let rebuilt_outcome = stack
        .publisher()
        .publish(&target, rebuilt.path())
        .await
        .unwrap();

    for outcome in [&again, &rebuilt_outcome] {
        assert!(outcome.unchanged);
        assert_eq!(outcome.deploy_id, first.deploy_id);
        assert_eq!(
            (outcome.uploaded, outcome.copied, outcome.bytes_uploaded),
            (0, 0, 0)
        );
    }
    assert_eq!(stack.writes(), (vec![], vec![]));
    assert_eq!(
        stack.keys_under("deploys/staging/").await.len(),
        ASTRO_SITE.len() + 1,
        "no second deploy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_one_file_uploads_only_that_file() {
    let stack = SiteStack::start().await;
    let target = PublishTarget::preview("feature/Login");
    let site = TempSite::with("one-change", ASTRO_SITE);
    let first = stack
        .publisher()
        .publish(&target, site.path())
        .await
        .unwrap();
    stack.writes();

    site.write("about/index.html", "<h1>About us</h1>");
    let second = stack
        .publisher()
        .publish(&target, site.path())
        .await
        .unwrap();

    assert!(!second.unchanged);
    assert_ne!(second.deploy_id, first.deploy_id);
    assert_eq!(second.previous.as_deref(), Some(first.deploy_id.as_str()));
    assert_eq!((second.uploaded, second.copied, second.deleted), (1, 7, 0));
    assert_eq!(second.bytes_uploaded, "<h1>About us</h1>".len() as u64);
    let (puts, copies) = stack.writes();
    let mut expected_puts = site_keys(&second, &["about/index.html"]);
    expected_puts.push(target.manifest_key(&second.deploy_id));
    expected_puts.push(target.pointer_key());
    expected_puts.sort();
    assert_eq!(puts, expected_puts);
    let unchanged: Vec<&str> = ASTRO_SITE
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| *p != "about/index.html")
        .collect();
    assert_eq!(copies, site_keys(&second, &unchanged));

    // Copies carry this deploy's headers.
    let key = format!(
        "{}assets/app-BQ4ZtN2k.css",
        target.deploy_prefix(&second.deploy_id)
    );
    let head = stack
        .s3
        .head_object()
        .bucket(BUCKET)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("text/css; charset=utf-8"));
    assert_eq!(
        head.cache_control(),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(stack.body(&key).await, "body{color:#333}");

    assert_eq!(stack.view(&target, "/about/").await, "<h1>About us</h1>");

    // A deleted file is gone from the new deploy; nothing is uploaded for it.
    site.delete("robots.txt");
    let third = stack
        .publisher()
        .publish(&target, site.path())
        .await
        .unwrap();
    assert_eq!((third.uploaded, third.copied, third.deleted), (0, 7, 1));
    assert!(stack
        .publisher()
        .resolve(&target, "/robots.txt")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_resolving_during_a_publish_only_see_complete_deploys() {
    let stack = SiteStack::start().await;
    let target = PublishTarget::Production;
    const PAGES: usize = 40;
    let version = |v: &str| -> Vec<(String, String)> {
        (0..PAGES)
            .map(|i| (format!("page-{i}.html"), format!("{v} page {i}")))
            .collect()
    };
    let site = TempSite::new("atomic");
    for (path, content) in version("v1") {
        site.write(&path, &content);
    }
    let v1 = stack
        .publisher()
        .publish(&target, site.path())
        .await
        .unwrap();
    for (path, content) in version("v2") {
        site.write(&path, &content);
    }

    // One file at a time, so the new deploy takes a while to fill up.
    let slow = stack.publisher().with_concurrency(1);
    let root = site.path().to_path_buf();
    let publish_target = target.clone();
    let publishing =
        tokio::spawn(async move { slow.publish(&publish_target, &root).await.unwrap() });

    let reader = stack.publisher();
    let mut checked = BTreeSet::new();
    let mut seen = Vec::new();
    let mut i = 0;
    loop {
        let done = publishing.is_finished();
        let path = format!("/page-{}.html", i % PAGES);
        let resolved = reader.resolve(&target, &path).await.unwrap().unwrap();
        let body = stack.body(&resolved.key).await;
        let expected_version = if resolved.deploy_id == v1.deploy_id {
            "v1"
        } else {
            "v2"
        };
        assert_eq!(body, format!("{expected_version} page {}", i % PAGES));
        // The first time a deploy is seen live, all of it must be there.
        if checked.insert(resolved.deploy_id.clone()) {
            let keys = stack
                .keys_under(&target.deploy_prefix(&resolved.deploy_id))
                .await;
            assert_eq!(
                keys.len(),
                PAGES + 1,
                "deploy {} is incomplete",
                resolved.deploy_id
            );
        }
        if seen.last() != Some(&resolved.deploy_id) {
            seen.push(resolved.deploy_id.clone());
        }
        i += 1;
        if done {
            break;
        }
    }
    let v2 = publishing.await.unwrap();
    assert_eq!(v2.uploaded, PAGES);
    // Readers saw v1, then v2, never anything in between or back.
    assert_eq!(seen.first(), Some(&v1.deploy_id));
    assert_eq!(seen.last(), Some(&v2.deploy_id));
    assert!(seen.len() <= 2, "{seen:?}");
    assert!(i > 2, "the reader never ran while the publish did");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_restores_the_previous_deploy_without_uploading() {
    let stack = SiteStack::start().await;
    let target = PublishTarget::Production;
    let site = TempSite::with("rollback", ASTRO_SITE);
    let v1 = stack
        .publisher()
        .publish(&target, site.path())
        .await
        .unwrap();
    // Nothing to roll back to yet.
    assert!(matches!(
        stack.publisher().rollback(&target).await,
        Err(PublishError::NoPrevious { .. })
    ));
    site.write("index.html", "<h1>Home, broken</h1>");
    let v2 = stack
        .publisher()
        .publish(&target, site.path())
        .await
        .unwrap();
    assert_eq!(stack.view(&target, "/").await, "<h1>Home, broken</h1>");
    stack.writes();

    let rolled = stack.publisher().rollback(&target).await.unwrap();

    assert_eq!(rolled.deploy_id, v1.deploy_id);
    assert_eq!(rolled.rolled_back_from, v2.deploy_id);
    // One write: the pointer. No file uploaded or copied.
    assert_eq!(stack.writes(), (vec![target.pointer_key()], vec![]));
    assert_eq!(stack.view(&target, "/").await, "<h1>Home</h1>");
    let live = stack.publisher().live(&target).await.unwrap().unwrap();
    assert_eq!(live.deploy_id, v1.deploy_id);
    assert_eq!(live.previous.as_deref(), Some(v2.deploy_id.as_str()));

    // Rolling back again undoes the rollback.
    let undone = stack.publisher().rollback(&target).await.unwrap();
    assert_eq!(undone.deploy_id, v2.deploy_id);
    assert_eq!(stack.view(&target, "/").await, "<h1>Home, broken</h1>");
    assert_eq!(stack.writes(), (vec![target.pointer_key()], vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_preview_deletes_its_pointer_and_every_deploy_and_nothing_else() {
    let stack = SiteStack::start().await;
    // `foo` is a prefix of `foo-bar`: removing one must not touch the other.
    let closed = PublishTarget::preview("foo");
    let open = PublishTarget::preview("foo-bar");
    let site = TempSite::with("remove", ASTRO_SITE);
    stack
        .publisher()
        .publish(&closed, site.path())
        .await
        .unwrap();
    site.write("index.html", "<h1>Home 2</h1>");
    let live = stack
        .publisher()
        .publish(&closed, site.path())
        .await
        .unwrap();
    stack.publisher().publish(&open, site.path()).await.unwrap();

    let removed = stack.publisher().remove(&closed).await.unwrap();

    assert_eq!(removed.was_live.as_deref(), Some(live.deploy_id.as_str()));
    // Two deploys of 8 files and a manifest each.
    assert_eq!(removed.deleted_objects, 18);
    assert!(stack.keys_under("deploys/preview/foo/").await.is_empty());
    assert!(stack.keys_under("live/preview/foo.json").await.is_empty());
    assert!(stack.publisher().live(&closed).await.unwrap().is_none());
    assert!(matches!(
        stack.publisher().resolve(&closed, "/").await,
        Err(PublishError::NotLive { .. })
    ));
    assert_eq!(stack.view(&open, "/").await, "<h1>Home 2</h1>");
    assert_eq!(stack.keys_under("deploys/preview/foo-bar/").await.len(), 9);

    // Removing twice is harmless (a replayed "PR closed" event).
    let again = stack.publisher().remove(&closed).await.unwrap();
    assert_eq!((again.was_live, again.deleted_objects), (None, 0));
}

/// Two ids as site-build makes deployment and deploy ids: KSUIDs, ordered
/// by time.
fn two_ids() -> (String, String) {
    let older = new_deploy_id();
    std::thread::sleep(Duration::from_millis(20));
    let newer = new_deploy_id();
    assert!(older < newer);
    (older, newer)
}

/// The deploy ids under `target`'s prefix.
async fn deploys_of(stack: &SiteStack, target: &PublishTarget) -> BTreeSet<String> {
    let keys = stack.keys_under(&target.deploys_prefix()).await;
    keys.iter()
        .filter_map(|k| k.strip_prefix(target.deploys_prefix().as_str()))
        .filter_map(|k| k.split('/').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_publishes_of_one_target_end_on_the_newer_deployment() {
    let stack = SiteStack::start().await;
    let target = PublishTarget::Staging;
    let base = TempSite::with("race-base", ASTRO_SITE);
    let original = stack
        .publisher()
        .publish(&target, base.path())
        .await
        .unwrap();

    let one = TempSite::with("race-one", ASTRO_SITE);
    let two = TempSite::with("race-two", ASTRO_SITE);
    for i in 0..30 {
        one.write(&format!("p/{i}.html"), &format!("one {i}"));
        two.write(&format!("p/{i}.html"), &format!("two {i}"));
    }
    let (older, newer) = two_ids();
    let (old_id, new_id) = two_ids();
    let slow = stack.publisher().with_concurrency(1);
    let (a, b) = tokio::join!(
        slow.publish_as(&target, one.path(), &old_id, Some(&older), None),
        slow.publish_as(&target, two.path(), &new_id, Some(&newer), None)
    );

    // Whoever switches first, the newer deployment ends live: either the
    // older one is superseded, or it switched first and the newer one
    // switched again over it.
    let b = b.expect("the newer deployment's publish never loses");
    let live = stack.publisher().live(&target).await.unwrap().unwrap();
    assert_eq!(live.deploy_id, new_id);
    assert_eq!(live.newest_deployment.as_deref(), Some(newer.as_str()));
    match a {
        Err(PublishError::Superseded {
            deployment,
            newer: by,
            live,
            ..
        }) => {
            assert_eq!(
                (deployment, by, live),
                (older.clone(), newer.clone(), new_id.clone())
            );
            assert_eq!(b.previous.as_deref(), Some(original.deploy_id.as_str()));
            // The superseded deploy was deleted.
            assert_eq!(
                deploys_of(&stack, &target).await,
                BTreeSet::from([original.deploy_id.clone(), new_id.clone()])
            );
        }
        Ok(a) => {
            assert_eq!(a.deploy_id, old_id);
            assert_eq!(b.previous.as_deref(), Some(old_id.as_str()));
        }
        Err(other) => panic!("the older publish failed: {other}"),
    }

    // An older deployment that starts after a newer one switched never
    // uploads anything.
    stack.writes();
    let oldest = format!("0{}", &older[1..]);
    let err = stack
        .publisher()
        .publish_as(&target, one.path(), &new_deploy_id(), Some(&oldest), None)
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::Superseded { .. }), "{err}");
    assert!(err.to_string().contains(&newer), "{err}");
    assert_eq!(stack.writes(), (vec![], vec![]));

    // A rollback keeps the newest deployment: older builds stay superseded.
    let rolled = stack.publisher().rollback(&target).await.unwrap();
    let live = stack.publisher().live(&target).await.unwrap().unwrap();
    assert_eq!(live.deploy_id, rolled.deploy_id);
    assert_eq!(live.newest_deployment.as_deref(), Some(newer.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_the_live_deploy_and_the_newest_n_and_rollback_reaches_each() {
    let stack = SiteStack::start().await;
    let target = PublishTarget::Production;
    let site = TempSite::with("prune", ASTRO_SITE);
    const KEEP: usize = 2;
    let mut ids = Vec::new();
    for n in 0..KEEP + 2 {
        site.write("index.html", &format!("<h1>Home {n}</h1>"));
        ids.push(
            stack
                .publisher()
                .publish(&target, site.path())
                .await
                .unwrap()
                .deploy_id,
        );
    }
    // A publish still uploading (no manifest yet) must survive a prune.
    let uploading = new_deploy_id();
    stack
        .s3
        .put_object()
        .bucket(BUCKET)
        .key(format!("{}index.html", target.deploy_prefix(&uploading)))
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"partial"))
        .send()
        .await
        .unwrap();

    let PruneOutcome {
        live,
        kept,
        pruned_deploys,
        deleted_objects,
        ..
    } = stack.publisher().prune(&target, KEEP).await.unwrap();

    assert_eq!(live, ids[3]);
    assert_eq!(kept, [ids[1].clone(), ids[2].clone()]);
    assert_eq!(pruned_deploys, [ids[0].clone()]);
    assert_eq!(deleted_objects, ASTRO_SITE.len() + 1);
    let mut expected: BTreeSet<String> = ids[1..].iter().cloned().collect();
    expected.insert(uploading.clone());
    assert_eq!(deploys_of(&stack, &target).await, expected);

    // Rollback reaches every kept deploy, and a plain rollback undoes it.
    for (n, id) in ids.iter().enumerate().skip(1).take(KEEP) {
        let rolled = stack
            .publisher()
            .rollback_to(&target, Some(id))
            .await
            .unwrap();
        assert_eq!(rolled.deploy_id, *id);
        assert_eq!(stack.view(&target, "/").await, format!("<h1>Home {n}</h1>"));
        stack.publisher().rollback(&target).await.unwrap();
        assert_eq!(stack.view(&target, "/").await, "<h1>Home 3</h1>");
    }
    // The pruned one is refused, naming what can be reached.
    let err = stack
        .publisher()
        .rollback_to(&target, Some(&ids[0]))
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::NotKept { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&ids[0]) && message.contains("pruned"),
        "{message}"
    );
    assert!(
        message.contains(&ids[1]) && message.contains(&ids[2]),
        "{message}"
    );
    // So are the live one and anything that is not a deploy id.
    assert!(matches!(
        stack.publisher().rollback_to(&target, Some(&ids[3])).await,
        Err(PublishError::AlreadyLive { .. })
    ));
    assert!(matches!(
        stack
            .publisher()
            .rollback_to(&target, Some("../staging"))
            .await,
        Err(PublishError::NotADeployId { .. })
    ));
    assert_eq!(stack.view(&target, "/").await, "<h1>Home 3</h1>");

    // Pruning again changes nothing.
    let again = stack.publisher().prune(&target, KEEP).await.unwrap();
    assert!(again.pruned_deploys.is_empty(), "{again:?}");
}

/// The request model of a deploy (docs/site-build.md, "What a deploy
/// costs"), for a site of `n` files, with `keep` deploys kept for rollback,
/// counted at the emulator: a one-page change is 2 GETs (pointer, live
/// manifest), 3 PUTs (the page, the manifest, the pointer) and n − 1
/// copies inside S3; the prune after it reads the pointer, lists the
/// deploys, checks the manifests of the `keep` newest and, once there is a
/// deploy past them, deletes it: HEAD and DELETE of its manifest, one
/// listing and one DeleteObjects per 1,000 keys. An unchanged site costs
/// the 2 GETs; a first publish a GET (no pointer) and n + 2 PUTs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_costs_what_the_request_model_says() {
    const N: usize = 30;
    const KEEP: usize = 2;
    let stack = SiteStack::start().await;
    let publisher = stack.publisher();
    let target = PublishTarget::Production;
    let site = TempSite::new("cost");
    for i in 0..N - 1 {
        site.write(
            &format!("posts/{i}/index.html"),
            &format!("<p>post {i}</p>"),
        );
    }
    site.write("index.html", "<h1>version 0</h1>");
    let model = |pairs: &[(&str, usize)]| -> BTreeMap<String, u64> {
        pairs
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(op, n)| ((*op).to_owned(), *n as u64))
            .collect()
    };
    let mut seen = BTreeMap::new();
    stack.requests(&mut seen).await;

    let first = publisher.publish(&target, site.path()).await.unwrap();
    assert_eq!((first.uploaded, first.copied), (N, 0));
    assert_eq!(
        stack.requests(&mut seen).await,
        model(&[("GetObject", 1), ("PutObject", N + 2)]),
        "first publish"
    );

    let unchanged = publisher.publish(&target, site.path()).await.unwrap();
    assert!(unchanged.unchanged);
    assert_eq!(
        stack.requests(&mut seen).await,
        model(&[("GetObject", 2)]),
        "unchanged publish"
    );

    // One-page changes, each followed by the prune site-build runs after
    // a publish. Deploys 1..=KEEP prune nothing; the next one prunes the
    // first deploy.
    for version in 1..=KEEP + 1 {
        site.write("index.html", &format!("<h1>version {version}</h1>"));
        let outcome = publisher.publish(&target, site.path()).await.unwrap();
        assert_eq!((outcome.uploaded, outcome.copied), (1, N - 1));
        assert_eq!(
            stack.requests(&mut seen).await,
            model(&[("GetObject", 2), ("PutObject", 3), ("CopyObject", N - 1)]),
            "one-page change {version}"
        );

        let pruned = publisher.prune(&target, KEEP).await.unwrap();
        let deploys = version + 1;
        let checked = (deploys - 1).min(KEEP);
        let doomed = deploys.saturating_sub(KEEP + 1);
        assert_eq!(pruned.pruned_deploys.len(), doomed, "{pruned:?}");
        assert_eq!(pruned.deleted_objects, doomed * (N + 1), "{pruned:?}");
        assert_eq!(
            stack.requests(&mut seen).await,
            model(&[
                ("GetObject", 1),
                ("ListObjectsV2", 1 + doomed),
                ("HeadObject", checked + doomed),
                ("DeleteObject", doomed),
                ("DeleteObjects", doomed),
            ]),
            "prune after one-page change {version} ({deploys} deploys, keep {KEEP})"
        );
    }
    assert_eq!(
        stack.view(&target, "/").await,
        format!("<h1>version {}</h1>", KEEP + 1)
    );
}
