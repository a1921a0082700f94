//! `deployer-bench`: figures for `make bench` (not pass/fail).
//!
//! - cold start (init, init + first invocation) and peak RSS of each function
//!   under the loopback Runtime API, beside `hello-lambda` (same runtime, same
//!   SDK clients, same release profile) measured in the same run;
//! - release zip sizes from `dist/` (`make package`);
//! - time from upload to IN_PROGRESS on the local stack, median of 20 builds;
//! - site-build's publisher beside `aws s3 sync` (the venv's awscli), both
//!   against the emulator: a generated 2,000-file site published first,
//!   again unchanged, and with one page changed, median of 3 runs each;
//! - the sample site built end to end (GitHub tarball from a local git
//!   repository behind a GitHub double, `npm ci` with a cold then a warm
//!   npm cache, `npm run build`, publish), median of 3 rounds.
//!
//! - site-build's publisher beside `aws s3 sync` again, on s3s-fs behind
//!   20 ms of latency per request (`local_stack::slow_s3`), at 2,000 and
//!   20,000 files, with the Publisher's requests per deploy.
//!
//! `deployer-bench functions` runs only the first four, `deployer-bench
//! site` the last three, `deployer-bench s3s` only the last one (see
//! docs/benchmarks.md). `BENCH_COMPARE` measures cold starts of other
//! revisions' release builds (bench/compare-revisions.sh).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use builddao::BuildStatus;
use local_stack::runtime::{Function, FunctionSpec};
use local_stack::{Emulator, Pipeline, PipelineOptions};
use serde_json::{json, Value};
use site_build::build::{NpmBuilder, SourceFetcher};
use site_build::{PublishOutcome, Publisher};
use sitedao::PublishTarget;

const COLD_RUNS: usize = 10;
const LATENCY_BUILDS: usize = 20;

/// Files in the generated site, and how often each publish is measured.
const SITE_FILES: usize = 2_000;
const SITE_RUNS: usize = 3;
/// What the publisher should beat `aws s3 sync` by.
const FIRST_PUBLISH_TARGET: f64 = 2.0;
const UNCHANGED_TARGET: f64 = 10.0;
/// A whole sample-site build, fetch to publish.
const BUILD_TARGET: Duration = Duration::from_secs(120);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = std::env::current_dir()?;
    let (functions, sites) = match std::env::args().nth(1).as_deref() {
        None => (true, true),
        Some("functions") => (true, false),
        Some("site") => (false, true),
        Some("s3s") => {
            let aws = local_stack::emulator::venv_python(&root)?.with_file_name("aws");
            return slow_store_benchmark(&root, &aws).await;
        }
        Some(other) => bail!("unknown part {other:?}: deployer-bench [functions | site | s3s]"),
    };
    let emulator = Arc::new(Emulator::start(&root, None).await?);
    if functions {
        function_benchmarks(&root, emulator.clone()).await?;
    }
    if sites {
        site_publish_benchmark(&root, &emulator).await?;
        sample_site_benchmark(&root, &emulator).await?;
    }
    Ok(())
}

/// A GitHub `ping` delivery as the function URL hands it to site-build:
/// JSON, signed with the webhook secret.
fn signed_ping(secret: &str) -> anyhow::Result<Value> {
    use local_stack::function_url::{url_event, UrlIdentity, UrlRequest};
    let body = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#.to_vec();
    let signature = site_build::WebhookSecret::new(secret.as_bytes())
        .map_err(|_| anyhow::anyhow!("the webhook secret is empty"))?
        .sign(&body);
    let mut headers = axum::http::HeaderMap::new();
    for (name, value) in [
        ("content-type", "application/json".to_owned()),
        ("user-agent", "GitHub-Hookshot/bench".to_owned()),
        ("x-github-event", "ping".to_owned()),
        ("x-github-delivery", "bench-ping".to_owned()),
        ("x-hub-signature-256", signature),
    ] {
        headers.insert(name, value.parse()?);
    }
    let request = UrlRequest {
        method: "POST".into(),
        path_and_query: "/".into(),
        version: axum::http::Version::HTTP_11,
        headers,
        body,
        source_ip: "192.30.252.1".into(),
    };
    let identity = UrlIdentity {
        url_id: "bench".into(),
        account_id: "123456789012".into(),
    };
    Ok(url_event(
        &request,
        &identity,
        time::OffsetDateTime::now_utc(),
    ))
}

/// Cold starts, zip sizes, ci-dispatch handler time, upload latency.
async fn function_benchmarks(root: &Path, emulator: Arc<Emulator>) -> anyhow::Result<()> {
    let root = root.to_path_buf();
    emulator.enable_state_machine_execution().await?;
    let mut options =
        PipelineOptions::new(root.clone(), "dev").parameter("PollIntervalSeconds", "1");
    options.profile = "release".into();
    let release_dir = options.target_dir.join("release");
    let pipeline = Pipeline::start(emulator.clone(), options).await?;
    let template = std::fs::read(root.join("examples/sample-app/cloudformation.template"))?;

    // A real build to replay into trigger-build.
    pipeline
        .upload(
            "bench/main/1.abcd/",
            &[
                ("cloudformation.template", template.clone()),
                (
                    "cloudformation-params.json",
                    br#"{"Greeting": "bench"}"#.to_vec(),
                ),
            ],
        )
        .await?;
    let builds = pipeline.builds();
    let first =
        local_stack::emulator::wait_until("bench build", Duration::from_secs(30), || async {
            Ok(builds.latest("bench", "dev").await?)
        })
        .await?;
    let stream_batch =
        local_stack::emulator::wait_until("its stream batch", Duration::from_secs(30), || async {
            Ok(pipeline
                .delivered
                .events(pipeline.trigger_build.name())
                .into_iter()
                .find(|e| e.to_string().contains(&first.sk)))
        })
        .await?;

    println!(
        "Cold start under the loopback Runtime API ({COLD_RUNS} cold starts each, median; RSS max)"
    );
    println!(
        "{:<26} {:>10} {:>12} {:>22} {:>14}",
        "function", "init ms", "init CPU ms", "init + 1st invoke ms", "peak RSS MB"
    );
    let hello_spec = FunctionSpec {
        name: "hello-lambda".into(),
        binary: release_dir.join("hello-lambda"),
        env: pipeline.function_specs[0].env.clone(),
        timeout: Duration::from_secs(30),
        log_file: None,
        sandbox: None,
    };
    // s3-trigger's cold starts read from a bucket nothing listens to and
    // write to a table without a stream, so the pipeline stays quiet while
    // they are measured (otherwise every upload starts a deployment).
    let quiet_bucket = "bench-quiet-artifacts";
    let quiet_table = "bench-quiet-builds";
    pipeline
        .s3()
        .create_bucket()
        .bucket(quiet_bucket)
        .send()
        .await?;
    create_builds_table(&pipeline, quiet_table).await?;
    // Its role may not touch them (the emulator enforces IAM), so this
    // instance signs as the operator: the same calls, other permissions.
    let mut s3_spec = pipeline.function_specs[0].clone();
    s3_spec.env.retain(|(k, _)| {
        !matches!(
            k.as_str(),
            "BUILDS_TABLE" | "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" | "AWS_SESSION_TOKEN"
        )
    });
    s3_spec
        .env
        .push(("BUILDS_TABLE".into(), quiet_table.into()));
    s3_spec.env.extend(
        emulator
            .client_env()
            .into_iter()
            .filter(|(k, _)| k.starts_with("AWS_ACCESS_KEY_ID") || k.starts_with("AWS_SECRET")),
    );
    let tb_spec = pipeline.function_specs[1].clone();
    let dispatch_spec = pipeline.function_specs[2].clone();
    // site-build's first invocation is a signed GitHub ping through its
    // function URL: verifying it reads the webhook secret, GitHub token
    // and Slack URL from SSM (one GetParameters) and makes the GitHub
    // clients, as the first webhook after a cold start does on AWS.
    let site_spec = pipeline.function_specs[3].clone();
    let site_ping = signed_ping(&pipeline.github_secret)?;
    // gates: the freeze-window check (no window configured), which every
    // revision of the function answers; the policy engine's cost is in
    // the binary and its init.
    let gates_spec = pipeline
        .function_specs
        .iter()
        .find(|s| s.name.ends_with("-deployer-gates"))
        .context("the gates function's spec")?
        .clone();
    pipeline.ecs_fixture("app", &[("api", 3)]).await?;
    let mut event_id = 0u64;
    let mut version = 100u64;
    // The release builds measured: this tree's, or the ones given as
    // BENCH_COMPARE="label=DIR,…" (DIR holds the release binaries of one
    // revision: bench/compare-revisions.sh). Each function's builds are
    // measured one after another, so they share the machine's load alike.
    let mut releases = vec![(String::new(), release_dir.clone())];
    if let Ok(compare) = std::env::var("BENCH_COMPARE") {
        releases.clear();
        for entry in compare.split(',').filter(|e| !e.is_empty()) {
            let (label, dir) = entry
                .split_once('=')
                .with_context(|| format!("BENCH_COMPARE entry {entry:?} is not label=DIR"))?;
            releases.push((format!(" ({label})"), PathBuf::from(dir)));
        }
    }
    // Every function of every build is served at once and the cold starts
    // go round-robin (run 1 of each, then run 2 of each, …), so a busy
    // moment of the machine lands on all of them alike, not on one block.
    struct Cell {
        label: &'static str,
        build: usize,
        function: std::sync::Arc<Function>,
        inits: Vec<f64>,
        cpus: Vec<f64>,
        totals: Vec<f64>,
        rss: u64,
    }
    let mut cells = Vec::new();
    for (label, spec) in [
        ("hello-lambda", hello_spec),
        ("s3-trigger", s3_spec),
        ("trigger-build", tb_spec),
        ("ci-dispatch", dispatch_spec),
        ("site-build", site_spec),
        ("gates", gates_spec),
    ] {
        for (build, (_, release_dir)) in releases.iter().enumerate() {
            let mut spec = spec.clone();
            if let Some(file) = spec.binary.file_name() {
                spec.binary = release_dir.join(file);
            }
            cells.push(Cell {
                label,
                build,
                function: Function::serve(spec, local_stack::account::REGION).await?,
                inits: Vec::new(),
                cpus: Vec::new(),
                totals: Vec::new(),
                rss: 0,
            });
        }
    }
    for _ in 0..COLD_RUNS {
        for cell in &mut cells {
            let event = match cell.label {
                "s3-trigger" => {
                    // A fresh upload each time; the pipeline's own s3-trigger
                    // sees it too, which does not affect this instance.
                    version += 1;
                    let prefix = format!("bench/main/{version}.abcd/");
                    put_in(
                        &pipeline,
                        quiet_bucket,
                        &format!("{prefix}cloudformation.template"),
                        template.clone(),
                    )
                    .await?;
                    let key = format!("{prefix}cloudformation-params.json");
                    put_in(
                        &pipeline,
                        quiet_bucket,
                        &key,
                        br#"{"Greeting": "bench"}"#.to_vec(),
                    )
                    .await?;
                    s3_event(quiet_bucket, &key)
                }
                "trigger-build" => stream_batch.clone(),
                "ci-dispatch" => {
                    event_id += 1;
                    ssm_event(event_id)
                }
                "site-build" => site_ping.clone(),
                "gates" => json!({"gate": "window", "env": "dev"}),
                _ => json!({}),
            };
            cell.function.stop().await;
            let answer = cell
                .function
                .invoke(&event)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", cell.label))?;
            if cell.label == "site-build" && answer["statusCode"] != 200 {
                bail!("site-build did not answer the signed ping: {answer}");
            }
            let figures = cell.function.figures().await;
            cell.inits.push(figures.init.as_secs_f64() * 1000.0);
            cell.cpus
                .push(figures.init_cpu.unwrap_or_default().as_secs_f64() * 1000.0);
            cell.totals.push(
                figures
                    .init_and_first_invoke
                    .unwrap_or_default()
                    .as_secs_f64()
                    * 1000.0,
            );
            cell.rss = cell
                .rss
                .max(cell.function.peak_rss_kib().await.unwrap_or(0));
        }
    }
    let mut hello = vec![(0.0, 0.0); releases.len()];
    for cell in &mut cells {
        cell.function.stop().await;
        let (init, cpu) = (median(&mut cell.inits), median(&mut cell.cpus));
        if cell.label == "hello-lambda" {
            hello[cell.build] = (init, cpu);
        }
        let (hello_init, hello_cpu) = hello[cell.build];
        let ratio = if hello_init > 0.0 && hello_cpu > 0.0 {
            format!(
                "  ({:.2}x hello init, {:.2}x its CPU)",
                init / hello_init,
                cpu / hello_cpu
            )
        } else {
            String::new()
        };
        println!(
            "{:<26} {:>10.1} {:>12.1} {:>22.1} {:>14.1}{ratio}",
            format!("{}{}", cell.label, releases[cell.build].0),
            init,
            cpu,
            median(&mut cell.totals),
            cell.rss as f64 / 1024.0
        );
    }

    println!("\nRelease zips (dist/, from `make package`)");
    for name in [
        "s3-trigger",
        "trigger-build",
        "ci-dispatch",
        "site-build",
        "site-builder",
        "gates",
    ] {
        let path = root.join("dist").join(format!("{name}.zip"));
        match std::fs::metadata(&path) {
            Ok(meta) => println!("{:<16} {:>8.2} MB", name, meta.len() as f64 / 1_048_576.0),
            Err(_) => println!("{:<16} {:>8} (run make package)", name, "-"),
        }
    }

    println!("\nci-dispatch handler time per event, warm, against the emulator (200 SSM change events: dedupe claim, DescribeTaskDefinition, UpdateService, deploy record, Slack post to a local sink)");
    let dispatch = &pipeline.ci_dispatch;
    dispatch
        .invoke(&ssm_event(0))
        .await
        .map_err(|e| anyhow::anyhow!("ci-dispatch: {e}"))?;
    let mut handler_ms = Vec::new();
    for i in 0..200u64 {
        let event = ssm_event(10_000 + i);
        let started = Instant::now();
        dispatch
            .invoke(&event)
            .await
            .map_err(|e| anyhow::anyhow!("ci-dispatch: {e}"))?;
        handler_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let median_ms = median(&mut handler_ms);
    println!(
        "median {median_ms:.1} ms, p90 {:.1} ms, max {:.1} ms",
        handler_ms[handler_ms.len() * 9 / 10],
        handler_ms.last().copied().unwrap_or_default()
    );

    println!("\nUpload -> IN_PROGRESS on the local stack ({LATENCY_BUILDS} builds)");
    let mut latencies = Vec::new();
    for i in 0..LATENCY_BUILDS {
        let repo = format!("lat{i}");
        let prefix = format!("{repo}/main/1.abcd/");
        put(
            &pipeline,
            &format!("{prefix}cloudformation.template"),
            template.clone(),
        )
        .await?;
        let started = Instant::now();
        put(
            &pipeline,
            &format!("{prefix}cloudformation-params.json"),
            br#"{"Greeting": "x"}"#.to_vec(),
        )
        .await?;
        loop {
            if let Some(build) = builds.latest(&repo, "dev").await? {
                if build.status != BuildStatus::Pending {
                    break;
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                anyhow::bail!("{repo} did not start within 30s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let median_ms = median(&mut latencies);
    println!(
        "median {median_ms:.0} ms, min {:.0} ms, max {:.0} ms (includes the local stack's 150 ms queue and stream polls)",
        latencies.first().copied().unwrap_or_default(),
        latencies.last().copied().unwrap_or_default()
    );
    pipeline.stop().await;
    Ok(())
}

async fn put(pipeline: &Pipeline, key: &str, body: Vec<u8>) -> anyhow::Result<()> {
    put_in(pipeline, &pipeline.resources.bucket, key, body).await
}

async fn put_in(pipeline: &Pipeline, bucket: &str, key: &str, body: Vec<u8>) -> anyhow::Result<()> {
    pipeline
        .s3()
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into())
        .send()
        .await
        .with_context(|| format!("uploading {key}"))?;
    Ok(())
}

async fn create_builds_table(pipeline: &Pipeline, name: &str) -> anyhow::Result<()> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let attribute = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |n: &str, k: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(k)
            .build()
    };
    aws_sdk_dynamodb::Client::new(&pipeline.sdk)
        .create_table()
        .table_name(name)
        .attribute_definitions(attribute("pk")?)
        .attribute_definitions(attribute("sk")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await?;
    Ok(())
}

fn ssm_event(id: u64) -> Value {
    json!({
        "version": "0", "id": format!("bench-{id}"), "detail-type": "Parameter Store Change",
        "source": "aws.ssm", "account": "123456789012", "time": "2026-11-23T10:00:00Z",
        "region": "us-east-1", "resources": [],
        "detail": {"operation": "Update", "name": "/dev/app/api/SETTING", "type": "String"}
    })
}

fn s3_event(bucket: &str, key: &str) -> Value {
    let record = json!({
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-23T10:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "bench",
               "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": key, "size": 20, "eTag": "0123456789abcdef0123456789abcdef"}}
    });
    json!({"Records": [local_stack::delivery::complete_s3_record(record)]})
}

/// Sorts in place and returns the median.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or_default()
}

// ------------------------------------------------------------ site-build

/// A temp folder, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> anyhow::Result<Self> {
        let path =
            std::env::temp_dir().join(format!("deployer-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }

    fn join(&self, path: &str) -> PathBuf {
        self.0.join(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// splitmix64: the generated site is the same bytes on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A size in `min..=max`, most of them nearer `min` (sites have many
    /// small files and a few large ones).
    fn size(&mut self, min: usize, max: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        min + ((max - min) as f64 * u * u) as usize
    }

    /// `len` bytes of noise after `magic`: compressed image or font data.
    fn binary(&mut self, magic: &[u8], len: usize) -> Vec<u8> {
        let mut bytes = magic.to_vec();
        while bytes.len() < len {
            bytes.extend_from_slice(&self.next().to_le_bytes());
        }
        bytes.truncate(len.max(magic.len()));
        bytes
    }
}

const WORDS: &[&str] = &[
    "deploy",
    "static",
    "site",
    "preview",
    "branch",
    "bucket",
    "cache",
    "edge",
    "pointer",
    "manifest",
    "rollback",
    "staging",
    "production",
    "build",
    "asset",
    "bundle",
    "page",
    "route",
    "header",
    "content",
    "the",
    "a",
    "of",
    "and",
    "to",
    "with",
    "every",
    "fast",
    "small",
    "live",
];

/// Prose of about `len` bytes.
fn prose(rng: &mut Rng, len: usize) -> String {
    let mut text = String::with_capacity(len + 16);
    while text.len() < len {
        text.push_str("<p>");
        for _ in 0..(12 + rng.below(40)) {
            text.push_str(WORDS[rng.below(WORDS.len())]);
            text.push(' ');
        }
        text.push_str("</p>\n");
    }
    text
}

/// FNV-1a, for bundler-style content hashes in file names.
fn content_hash(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{:08x}", hash as u32)
}

/// What [`generate_site`] wrote: per kind, files and bytes.
struct SiteSummary {
    kinds: Vec<(&'static str, usize, u64)>,
}

impl SiteSummary {
    fn files(&self) -> usize {
        self.kinds.iter().map(|(_, n, _)| n).sum()
    }

    fn bytes(&self) -> u64 {
        self.kinds.iter().map(|(_, _, b)| b).sum()
    }

    /// `2000 files, 28.6 MB: 100 css 0.9 MB, …`
    fn describe(&self) -> String {
        let kinds: Vec<String> = self
            .kinds
            .iter()
            .map(|(kind, n, bytes)| format!("{n} {kind} {:.1} MB", *bytes as f64 / 1_048_576.0))
            .collect();
        format!(
            "{} files, {:.1} MB: {}",
            self.files(),
            self.bytes() as f64 / 1_048_576.0,
            kinds.join(", ")
        )
    }
}

/// A built site of `scale` × [`SITE_FILES`] files as a bundler leaves it:
/// per 2,000, 700 HTML pages, 100 CSS and 400 JS bundles with content
/// hashes in their names, 780 images (PNG, JPEG, WebP, SVG; 1–50 KB), 16
/// fonts; and the 4 root files. Deterministic: the same bytes on every run.
fn generate_site(dir: &Path, scale: usize) -> anyhow::Result<SiteSummary> {
    let mut rng = Rng(0x5eed_0000_0000_2000);
    let mut files: Vec<(&'static str, String, Vec<u8>)> = Vec::new();

    let mut css = Vec::new();
    for i in 0..100 * scale {
        let len = rng.size(1_000, 30_000);
        let mut body = String::new();
        let mut rule = 0;
        while body.len() < len {
            body.push_str(&format!(
                ".c{i}-{rule} {{ margin: {}px {}px; color: #{:06x}; display: flex; }}\n",
                rng.below(64),
                rng.below(64),
                rng.next() & 0xff_ffff
            ));
            rule += 1;
        }
        let path = format!("assets/page{i}.{}.css", content_hash(body.as_bytes()));
        css.push(path.clone());
        files.push(("css", path, body.into_bytes()));
    }
    let mut js = Vec::new();
    for i in 0..400 * scale {
        let len = rng.size(1_000, 50_000);
        let mut body = String::new();
        let mut function = 0;
        while body.len() < len {
            body.push_str(&format!(
                "export function f{i}_{function}(a, b) {{ return a * {} + b - {}; }}\n",
                rng.below(1000),
                rng.below(1000)
            ));
            function += 1;
        }
        let path = format!("_astro/chunk{i}-{}.js", content_hash(body.as_bytes()));
        js.push(path.clone());
        files.push(("js", path, body.into_bytes()));
    }
    for i in 0..16 * scale {
        let len = rng.size(20_000, 50_000);
        files.push((
            "fonts",
            format!("fonts/inter-{}.woff2", 100 + i * 50),
            rng.binary(b"wOF2", len),
        ));
    }
    for i in 0..780 * scale {
        let len = rng.size(1_000, 50_000);
        let (ext, bytes) = match i % 4 {
            0 => ("png", rng.binary(b"\x89PNG\r\n\x1a\n", len)),
            1 => ("jpg", rng.binary(b"\xff\xd8\xff\xe0", len)),
            2 => ("webp", rng.binary(b"RIFF\0\0\0\0WEBP", len)),
            _ => {
                let mut svg = String::from(r#"<svg xmlns="http://www.w3.org/2000/svg">"#);
                while svg.len() < len {
                    svg.push_str(&format!(
                        r##"<path d="M{} {}L{} {}Z" fill="#{:06x}"/>"##,
                        rng.below(512),
                        rng.below(512),
                        rng.below(512),
                        rng.below(512),
                        rng.next() & 0xff_ffff
                    ));
                }
                svg.push_str("</svg>");
                ("svg", svg.into_bytes())
            }
        };
        files.push(("images", format!("images/{}/img{i}.{ext}", i % 20), bytes));
    }
    let mut pages = vec![
        "index.html".to_owned(),
        "404.html".to_owned(),
        "about/index.html".to_owned(),
        "blog/index.html".to_owned(),
    ];
    pages.extend((0..480 * scale).map(|i| format!("blog/post-{i}/index.html")));
    // 216 per 2,000, and for each further 2,000 the share of the 4 fixed
    // pages and the 4 root files, which a site has once.
    pages.extend(
        (0..216 * scale + 8 * (scale - 1))
            .map(|i| format!("docs/section-{}/page-{i}.html", i % 12)),
    );
    for path in &pages {
        let len = rng.size(2_000, 30_000);
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{path}</title>\n\
             <link rel=\"stylesheet\" href=\"/{}\"><script type=\"module\" src=\"/{}\"></script></head>\n\
             <body><main>\n{}</main></body></html>\n",
            css[rng.below(css.len())],
            js[rng.below(js.len())],
            prose(&mut rng, len)
        );
        files.push(("html", path.clone(), html.into_bytes()));
    }
    let sitemap: String = pages
        .iter()
        .map(|p| format!("<url><loc>https://example.com/{p}</loc></url>\n"))
        .collect();
    files.push((
        "root",
        "robots.txt".into(),
        b"User-agent: *\nAllow: /\n".to_vec(),
    ));
    files.push(("root", "sitemap.xml".into(), sitemap.into_bytes()));
    files.push((
        "root",
        "favicon.ico".into(),
        rng.binary(b"\0\0\x01\0", 4_286),
    ));
    files.push((
        "root",
        "site.webmanifest".into(),
        br#"{"name": "Bench site", "icons": []}"#.to_vec(),
    ));
    anyhow::ensure!(
        files.len() == SITE_FILES * scale,
        "generated {} files",
        files.len()
    );

    let mut kinds: Vec<(&'static str, usize, u64)> = Vec::new();
    for (kind, path, bytes) in &files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, bytes).with_context(|| format!("writing {}", target.display()))?;
        match kinds.iter_mut().find(|(k, _, _)| k == kind) {
            Some((_, n, b)) => {
                *n += 1;
                *b += bytes.len() as u64;
            }
            None => kinds.push((kind, 1, bytes.len() as u64)),
        }
    }
    Ok(SiteSummary { kinds })
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

async fn create_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<()> {
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .with_context(|| format!("creating bucket {bucket}"))?;
    Ok(())
}

async fn object_count(s3: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<usize> {
    let mut pages = s3.list_objects_v2().bucket(bucket).into_paginator().send();
    let mut count = 0;
    while let Some(page) = pages.next().await {
        count += page?.contents().len();
    }
    Ok(count)
}

/// CPU seconds (user + system, in clock ticks of 1/100 s) of process
/// `pid` and of the children it has waited for, from `/proc`.
fn cpu_seconds(pid: &str) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: utime, stime,
    // cutime and cstime are fields 14 to 17, so 11 to 14 here.
    let fields: Vec<f64> = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse::<f64>().map(|t| t / 100.0))
        .collect::<Result<_, _>>()
        .ok()?;
    Some((
        fields.first()? + fields.get(1)?,
        fields.get(2)? + fields.get(3)?,
    ))
}

/// The emulator's process id: the moto server listening on its port.
fn emulator_pid(emulator: &Emulator) -> Option<String> {
    let port = emulator.port.to_string();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid = entry.file_name().into_string().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_moto = args.iter().any(|a| a.ends_with(b"moto_server.py"))
                && args
                    .windows(2)
                    .any(|w| w[0] == b"--port" && w[1] == port.as_bytes());
            is_moto.then_some(pid)
        })
}

/// Wall time and CPU of one measurement: the client's (this process for
/// the Publisher, the aws CLI for sync) and the emulator's.
#[derive(Default, Clone, Copy)]
struct Sample {
    ms: f64,
    client_cpu: f64,
    emulator_cpu: f64,
}

struct Clock {
    started: Instant,
    ours: (f64, f64),
    emulator: f64,
}

impl Clock {
    fn start(emulator_pid: Option<&str>) -> Self {
        Self {
            started: Instant::now(),
            ours: cpu_seconds("self").unwrap_or_default(),
            emulator: emulator_pid
                .and_then(cpu_seconds)
                .map_or(0.0, |(cpu, _)| cpu),
        }
    }

    /// `children`: the client was a child process (aws), not this one.
    fn stop(self, emulator_pid: Option<&str>, children: bool) -> Sample {
        let ms = ms(self.started);
        let ours = cpu_seconds("self").unwrap_or_default();
        let emulator = emulator_pid
            .and_then(cpu_seconds)
            .map_or(0.0, |(cpu, _)| cpu);
        Sample {
            ms,
            client_cpu: if children {
                ours.1 - self.ours.1
            } else {
                ours.0 - self.ours.0
            },
            emulator_cpu: emulator - self.emulator,
        }
    }
}

/// Times one publish and checks it did what the row says.
async fn publish(
    publisher: &Publisher,
    target: &PublishTarget,
    site: &Path,
    expect: (usize, usize, bool),
    emulator_pid: Option<&str>,
) -> anyhow::Result<(Sample, PublishOutcome)> {
    let clock = Clock::start(emulator_pid);
    let outcome = publisher
        .publish(target, site)
        .await
        .with_context(|| format!("publishing into {}", publisher.bucket()))?;
    let sample = clock.stop(emulator_pid, false);
    let got = (outcome.uploaded, outcome.copied, outcome.unchanged);
    anyhow::ensure!(
        got == expect,
        "publish into {}: (uploaded, copied, unchanged) = {got:?}, expected {expect:?}",
        publisher.bucket()
    );
    Ok((sample, outcome))
}

/// Times `aws s3 sync site s3://bucket` against the emulator, checking it
/// uploaded `expect` files.
async fn aws_sync(
    aws: &Path,
    store: &Store,
    site: &Path,
    bucket: &str,
    expect: usize,
) -> anyhow::Result<Sample> {
    let emulator_pid = store.pid.as_deref();
    let mut command = tokio::process::Command::new(aws);
    command
        .args(["s3", "sync"])
        .arg(site)
        .arg(format!("s3://{bucket}"))
        .arg("--no-progress")
        // Defaults only: no profile or config of the machine's user.
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .envs(store.cli_env.iter().cloned())
        .stdin(std::process::Stdio::null());
    let clock = Clock::start(emulator_pid);
    let output = command
        .output()
        .await
        .with_context(|| format!("running {}", aws.display()))?;
    let sample = clock.stop(emulator_pid, true);
    if !output.status.success() {
        bail!(
            "aws s3 sync into {bucket} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let uploaded = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with("upload:"))
        .count();
    anyhow::ensure!(
        uploaded == expect,
        "aws s3 sync into {bucket} uploaded {uploaded} files, expected {expect}"
    );
    Ok(sample)
}

/// Runs `a` and `b` one after the other (futures do nothing until awaited),
/// `b` first when `b_first`.
async fn in_order<A, B>(
    b_first: bool,
    a: impl std::future::Future<Output = anyhow::Result<A>>,
    b: impl std::future::Future<Output = anyhow::Result<B>>,
) -> anyhow::Result<(A, B)> {
    if b_first {
        let b = b.await?;
        Ok((a.await?, b))
    } else {
        let a = a.await?;
        Ok((a, b.await?))
    }
}

/// Medians of each field (each sorted on its own).
fn median_sample(samples: &[Sample]) -> Sample {
    let field = |f: fn(&Sample) -> f64| median(&mut samples.iter().map(f).collect::<Vec<_>>());
    Sample {
        ms: field(|s| s.ms),
        client_cpu: field(|s| s.client_cpu),
        emulator_cpu: field(|s| s.emulator_cpu),
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

/// An S3 endpoint the site bench publishes to, with both tools.
struct Store {
    /// How the tables name it.
    name: String,
    s3: aws_sdk_s3::Client,
    /// The server process, for its CPU time.
    pid: Option<String>,
    /// The aws CLI's environment (endpoint and keys).
    cli_env: Vec<(String, String)>,
    /// Counts the Publisher's requests, when `s3` was built with it.
    counter: Option<RequestCounter>,
}

/// Counts the requests an S3 client sends, by operation, each attempt
/// (what S3 bills), from the HTTP request about to go out.
#[derive(Debug, Clone, Default)]
struct RequestCounter(Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>>);

impl RequestCounter {
    /// The counts so far, and a fresh start.
    fn take(&self) -> std::collections::BTreeMap<&'static str, u64> {
        std::mem::take(&mut *self.0.lock().expect("counter lock"))
    }
}

impl aws_sdk_s3::config::Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let request = context.request();
        let query = request.uri().split_once('?').map_or("", |(_, q)| q);
        let operation = match request.method() {
            "GET" if query.contains("list-type=2") => "ListObjectsV2",
            "GET" => "GetObject",
            "HEAD" => "HeadObject",
            "PUT" if request.headers().contains_key("x-amz-copy-source") => "CopyObject",
            "PUT" => "PutObject",
            "POST" if query.contains("delete") => "DeleteObjects",
            "DELETE" => "DeleteObject",
            _ => "other",
        };
        *self
            .0
            .lock()
            .expect("counter lock")
            .entry(operation)
            .or_default() += 1;
        Ok(())
    }
}

fn describe_counts(counts: &std::collections::BTreeMap<&'static str, u64>) -> String {
    let total: u64 = counts.values().sum();
    let each: Vec<String> = counts.iter().map(|(op, n)| format!("{op} {n}")).collect();
    format!("{total:>6} ({})", each.join(", "))
}

/// The three steps of [`beside_sync`], each with the Publisher's samples
/// and sync's, and the bucket the Publisher's last run left live.
struct Compared {
    rows: [(Vec<Sample>, Vec<Sample>); 3],
    /// The Publisher's requests in each step of the last run (when counted).
    requests: [std::collections::BTreeMap<&'static str, u64>; 3],
    last_bucket: String,
}

/// The Publisher beside `aws s3 sync` on `store`, `runs` times, each run in
/// fresh buckets named after `tag`: first publish, unchanged, one page
/// changed (the site's `index.html` is edited in place).
async fn beside_sync(
    store: &Store,
    aws: &Path,
    site: &Path,
    files: usize,
    runs: usize,
    tag: &str,
) -> anyhow::Result<Compared> {
    let pid = store.pid.as_deref();
    let target = PublishTarget::Production;
    let mut rows: [(Vec<Sample>, Vec<Sample>); 3] = Default::default();
    let mut requests: [std::collections::BTreeMap<&'static str, u64>; 3] = Default::default();
    let counted = |step: usize, requests: &mut [std::collections::BTreeMap<_, _>; 3]| {
        if let Some(counter) = &store.counter {
            requests[step] = counter.take();
        }
    };
    let index = site.join("index.html");
    let mut last_bucket = String::new();
    for run in 0..runs {
        let bucket = format!("bench-publish-{tag}-{run}");
        create_bucket(&store.s3, &bucket).await?;
        let publisher = Publisher::new(store.s3.clone(), &bucket);
        let sync_bucket = format!("bench-sync-{tag}-{run}");
        create_bucket(&store.s3, &sync_bucket).await?;

        // Odd runs time sync first, so neither tool always meets a
        // fresher server.
        let sync_first = run % 2 == 1;
        counted(0, &mut requests);
        let (ours, theirs) = in_order(
            sync_first,
            publish(&publisher, &target, site, (files, 0, false), pid),
            aws_sync(aws, store, site, &sync_bucket, files),
        )
        .await?;
        counted(0, &mut requests);
        anyhow::ensure!(object_count(&store.s3, &sync_bucket).await? == files);
        rows[0].0.push(ours.0);
        rows[0].1.push(theirs);
        if let Some(counter) = &store.counter {
            counter.take();
        }

        let (ours, theirs) = in_order(
            sync_first,
            publish(&publisher, &target, site, (0, 0, true), pid),
            aws_sync(aws, store, site, &sync_bucket, 0),
        )
        .await?;
        rows[1].0.push(ours.0);
        rows[1].1.push(theirs);
        counted(1, &mut requests);

        // One page edited: the Publisher uploads it and copies the rest
        // inside S3 into the new deploy; sync uploads the one file.
        let mut page = std::fs::read(&index)?;
        page.extend_from_slice(format!("<!-- edit {tag} {run} -->\n").as_bytes());
        std::fs::write(&index, page)?;
        let (ours, theirs) = in_order(
            sync_first,
            publish(&publisher, &target, site, (1, files - 1, false), pid),
            aws_sync(aws, store, site, &sync_bucket, 1),
        )
        .await?;
        rows[2].0.push(ours.0);
        rows[2].1.push(theirs);
        counted(2, &mut requests);
        last_bucket = bucket;
    }
    Ok(Compared {
        rows,
        requests,
        last_bucket,
    })
}

impl Compared {
    fn print(&self, server: &str, one_page_target: Option<f64>) {
        let labels = [
            ("first publish", Some(FIRST_PUBLISH_TARGET)),
            ("unchanged", Some(UNCHANGED_TARGET)),
            ("one page changed", one_page_target),
        ];
        println!(
            "{:<18} {:>13} {:>15} {:>9} {:>13}   {:>26} {:>26}",
            "",
            "Publisher ms",
            "aws s3 sync ms",
            "speed-up",
            "target",
            format!("Publisher CPU s / {server}'s"),
            format!("aws CLI CPU s / {server}'s"),
        );
        for ((label, target), (ours, theirs)) in labels.iter().zip(self.rows.iter()) {
            let (ours, theirs) = (median_sample(ours), median_sample(theirs));
            let ratio = theirs.ms / ours.ms;
            let target = match target {
                Some(t) if *t >= 1.0 => {
                    format!("{:>6} {:<6}", format!(">={t:.0}x"), verdict(ratio >= *t))
                }
                // Below 1: "within 1/t of sync's time".
                Some(t) => format!("{:>6} {:<6}", format!(">={t:.1}x"), verdict(ratio >= *t)),
                None => format!("{:>13}", "-"),
            };
            println!(
                "{label:<18} {:>13.0} {:>15.0} {:>8.2}x {target}   {:>26} {:>26}",
                ours.ms,
                theirs.ms,
                ratio,
                format!("{:.1} / {:.1}", ours.client_cpu, ours.emulator_cpu),
                format!("{:.1} / {:.1}", theirs.client_cpu, theirs.emulator_cpu),
            );
        }
        if self.requests.iter().any(|r| !r.is_empty()) {
            println!("Publisher's S3 requests per deploy (last run, each attempt):");
            for ((label, _), counts) in labels.iter().zip(self.requests.iter()) {
                println!("  {label:<18} {}", describe_counts(counts));
            }
        }
    }
}

/// site-build's publisher beside `aws s3 sync`, same site, same server,
/// same run, each into fresh buckets: on the emulator, then on s3s-fs with
/// S3-like latency, at 2,000 and 20,000 files.
async fn site_publish_benchmark(root: &Path, emulator: &Emulator) -> anyhow::Result<()> {
    let scratch = Scratch::new("site")?;
    let site = scratch.join("site");
    let summary = generate_site(&site, 1)?;
    let aws = local_stack::emulator::venv_python(root)?.with_file_name("aws");
    if !aws.is_file() {
        bail!(
            "{} not found: `make setup` installs awscli into the venv",
            aws.display()
        );
    }
    let moto = Store {
        name: "moto".into(),
        s3: aws_sdk_s3::Client::new(&emulator.sdk_config().await),
        pid: emulator_pid(emulator),
        cli_env: emulator.client_env(),
        counter: None,
    };
    let s3 = moto.s3.clone();
    let target = PublishTarget::Production;
    let files = summary.files();
    println!(
        "\nPublishing a generated site ({}) to the emulator: \
         site-build's Publisher (uploads {} at once, copies {}, in this {} build) beside `aws s3 sync` \
         (awscli defaults: 10 requests at once), fresh buckets, median of {SITE_RUNS} runs",
        summary.describe(),
        site_build::publish::DEFAULT_CONCURRENCY,
        site_build::publish::DEFAULT_COPY_CONCURRENCY,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    );
    let compared = beside_sync(&moto, &aws, &site, files, SITE_RUNS, "moto").await?;
    compared.print("moto", None);
    let first = (
        median_sample(&compared.rows[0].0),
        median_sample(&compared.rows[0].1),
    );
    let last_bucket = compared.last_bucket.clone();
    let moto = moto.pid.as_deref();
    println!(
        "(one page changed: the Publisher uploads 1 file and copies {} inside S3 into its new deploy; sync uploads 1)",
        files - 1
    );

    println!("\nPublisher, where the time goes");
    // moto's handlers run one at a time (Python's GIL), so no client can
    // finish before the emulator has spent its CPU time on its requests.
    println!(
        "first publish: moto busy {:.0}% of the Publisher's {:.0} ms ({:.1} ms of moto CPU per request); \
         even a client costing nothing would be at most {:.2}x faster than sync on this emulator",
        first.0.emulator_cpu * 1000.0 / first.0.ms * 100.0,
        first.0.ms,
        first.0.emulator_cpu * 1000.0 / (files + 3) as f64,
        first.1.ms / (first.0.emulator_cpu * 1000.0),
    );
    for concurrency in [8, 32, 128] {
        let bucket = format!("bench-publish-c{concurrency}");
        create_bucket(&s3, &bucket).await?;
        let publisher = Publisher::new(s3.clone(), &bucket).with_concurrency(concurrency);
        let (sample, _) = publish(&publisher, &target, &site, (files, 0, false), moto).await?;
        println!(
            "first publish, concurrency {concurrency:>3} (1 run): {:>7.0} ms (Publisher CPU {:.1} s, moto {:.1} s)",
            sample.ms, sample.client_cpu, sample.emulator_cpu
        );
    }
    // The bucket whose live deploy is the site as it is on disk now.
    let publisher = Publisher::new(s3.clone(), &last_bucket);
    let started = Instant::now();
    let live = publisher.live(&target).await?.context("a live deploy")?;
    let pointer_ms = ms(started);
    let started = Instant::now();
    let manifest = publisher
        .manifest(&target, &live.deploy_id)
        .await?
        .context("its manifest")?;
    let manifest_ms = ms(started);
    let manifest_kb = serde_json::to_vec(&manifest)?.len() as f64 / 1024.0;
    let mut unchanged = Vec::new();
    for _ in 0..5 {
        let (sample, _) = publish(&publisher, &target, &site, (0, 0, true), moto).await?;
        unchanged.push(sample.ms);
    }
    let fastest = unchanged.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "unchanged publish, fastest of 5: {fastest:.0} ms = live pointer GET {pointer_ms:.0} ms + manifest GET \
         ({manifest_kb:.0} KB) {manifest_ms:.0} ms + {:.0} ms scanning and hashing {files} local files \
         (SHA-256 of {:.1} MB, before either GET)",
        (fastest - pointer_ms - manifest_ms).max(0.0),
        summary.bytes() as f64 / 1_048_576.0,
    );

    // Same paths, 64 bytes each: what is per file, not per byte.
    let tiny = scratch.join("tiny");
    for entry in walk(&site)? {
        let relative = entry.strip_prefix(&site)?;
        let target = tiny.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, format!("{:<63}\n", relative.display()))?;
    }
    create_bucket(&s3, "bench-publish-tiny").await?;
    let publisher = Publisher::new(s3.clone(), "bench-publish-tiny");
    publish(&publisher, &target, &tiny, (files, 0, false), moto).await?;
    let mut tiny_ms = Vec::new();
    for _ in 0..5 {
        let (sample, _) = publish(&publisher, &target, &tiny, (0, 0, true), moto).await?;
        tiny_ms.push(sample.ms);
    }
    println!(
        "unchanged publish of the same {files} paths at 64 bytes each, fastest of 5: {:.0} ms (per-file cost; the rest of the {fastest:.0} ms is per byte)",
        tiny_ms.iter().copied().fold(f64::INFINITY, f64::min)
    );

    slow_store_benchmark(root, &aws).await
}

/// What a request costs on the S3-like server: first byte no sooner than this.
const SLOW_S3_LATENCY: Duration = Duration::from_millis(20);
/// The one-page change, on that server: within 2× of sync's time.
const ONE_PAGE_TARGET: f64 = 0.5;

/// The Publisher beside `aws s3 sync` on s3s-fs behind [`SLOW_S3_LATENCY`]:
/// a server that, like S3, is not the bottleneck and makes each request
/// wait, so requests in flight count. 2,000 files ([`SITE_RUNS`] runs) and
/// 20,000 (1 run).
async fn slow_store_benchmark(root: &Path, aws: &Path) -> anyhow::Result<()> {
    let scratch = Scratch::new("slow-s3")?;
    let server = local_stack::slow_s3::SlowS3::start(
        &root.join(".tools/bin/s3s-fs"),
        &scratch.join("server"),
        SLOW_S3_LATENCY,
    )
    .await?;
    let counter = RequestCounter::default();
    let config = server.sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .interceptor(counter.clone())
            .build(),
    );
    let store = Store {
        name: "s3s-fs".into(),
        s3,
        pid: server.pid().map(|pid| pid.to_string()),
        cli_env: server.client_env(),
        counter: Some(counter),
    };
    for (scale, runs) in [(1, SITE_RUNS), (10, 1)] {
        let site = scratch.join(&format!("site-{scale}"));
        let summary = generate_site(&site, scale)?;
        println!(
            "\nPublishing a generated site ({}) to {} (s3s-fs 0.14.1, crates.io) behind {} ms of latency per request: \
             Publisher (uploads {} at once, copies {}) beside `aws s3 sync` (10 at once), fresh buckets, {}",
            summary.describe(),
            store.name,
            SLOW_S3_LATENCY.as_millis(),
            site_build::publish::DEFAULT_CONCURRENCY,
            site_build::publish::DEFAULT_COPY_CONCURRENCY,
            if runs == 1 {
                "1 run".to_owned()
            } else {
                format!("median of {runs} runs")
            },
        );
        let compared = beside_sync(
            &store,
            aws,
            &site,
            summary.files(),
            runs,
            &format!("slow{scale}"),
        )
        .await?;
        compared.print(&store.name, Some(ONE_PAGE_TARGET));
    }
    Ok(())
}

/// Every file under `dir`.
fn walk(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    Ok(files)
}

/// The sample site built as site-build will build it: source fetched at a
/// commit, `npm ci` with a shared cache, `npm run build`, published.
async fn sample_site_benchmark(root: &Path, emulator: &Emulator) -> anyhow::Result<()> {
    let Some(npm) = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("npm"))
        .find(|path| path.is_file())
    else {
        println!("\nSample site build: skipped, npm is not on PATH");
        return Ok(());
    };
    let scratch = Scratch::new("sample-site")?;
    let repo = local_stack::SampleRepo::create(root, &scratch.0)?;
    let commit = repo.head()?;
    let github = local_stack::GitHubDouble::start(local_stack::GitHubOptions {
        repository: "acme/sample-site".into(),
        repo_dir: Some(repo.dir.clone()),
        token: None,
    })
    .await?;
    let fetcher = SourceFetcher::new(&github.api_url, None)?;
    let s3 = aws_sdk_s3::Client::new(&emulator.sdk_config().await);
    let bucket = "bench-sample-site";
    create_bucket(&s3, bucket).await?;
    let publisher = Publisher::new(s3, bucket);

    println!(
        "\nSample site end to end (examples/sample-site): its commit fetched as GitHub serves it \
         (tarball API, 302 to codeload; a local git repository behind the GitHub double), \
         `npm ci --prefer-offline` ({}), `npm run build`, publish to the emulator; median of \
         {SITE_RUNS} rounds, each a fresh npm cache (cold) then the same cache again (warm)",
        npm.display()
    );
    // [fetch, npm ci, npm run build, publish, total] per cache state.
    let mut figures: [[Vec<f64>; 5]; 2] = Default::default();
    for round in 0..SITE_RUNS {
        let builder = NpmBuilder::new(&npm, scratch.join(&format!("npm-cache-{round}")));
        for (state, label) in ["cold", "warm"].into_iter().enumerate() {
            let started = Instant::now();
            let tree = fetcher
                .fetch(
                    "acme/sample-site",
                    &commit,
                    &scratch.join(&format!("tree-{round}-{label}")),
                )
                .await?;
            let fetched = ms(started);
            let built = builder.build(&tree.root, "staging").await.map_err(|f| {
                anyhow::anyhow!("sample site build: {f}\n{}", f.log_tail.join("\n"))
            })?;
            let before_publish = Instant::now();
            let outcome = publisher
                .publish(
                    &PublishTarget::preview(&format!("bench-{round}-{label}")),
                    &built.output_dir,
                )
                .await?;
            anyhow::ensure!(outcome.uploaded > 0, "the sample site published nothing");
            let published = ms(before_publish);
            let total = ms(started);
            for (column, value) in figures[state].iter_mut().zip([
                fetched,
                built.durations.install.as_secs_f64() * 1000.0,
                built.durations.build.as_secs_f64() * 1000.0,
                published,
                total,
            ]) {
                column.push(value);
            }
        }
    }
    println!(
        "{:<10} {:>9} {:>10} {:>17} {:>11} {:>9} {:>18}",
        "npm cache",
        "fetch ms",
        "npm ci ms",
        "npm run build ms",
        "publish ms",
        "total ms",
        "target"
    );
    for (label, columns) in ["cold", "warm"].into_iter().zip(figures.iter_mut()) {
        let [fetch, install, build, publish, total] = columns;
        let total = median(total);
        let met = verdict(total < BUILD_TARGET.as_secs_f64() * 1000.0);
        println!(
            "{label:<10} {:>9.0} {:>10.0} {:>17.0} {:>11.0} {total:>9.0} {:>18}",
            median(fetch),
            median(install),
            median(build),
            median(publish),
            format!("< {} ms {met}", BUILD_TARGET.as_millis()),
        );
    }
    Ok(())
}
