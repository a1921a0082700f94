//! `deployer-bench`: figures for `make bench` (not pass/fail).
//!
//! - cold start (init, init + first invocation) and peak RSS of each function
//!   under the loopback Runtime API, beside `hello-lambda` (same runtime, same
//!   SDK clients, same release profile) measured in the same run;
//! - release zip sizes from `dist/` (`make package`);
//! - time from upload to IN_PROGRESS on the local stack, median of 20 builds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use builddao::BuildStatus;
use localstack::runtime::{Function, FunctionSpec};
use localstack::{Emulator, Pipeline, PipelineOptions};
use serde_json::{json, Value};

const COLD_RUNS: usize = 10;
const LATENCY_BUILDS: usize = 20;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = std::env::current_dir()?;
    let emulator = Arc::new(Emulator::start(&root, None).await?);
    emulator.enable_state_machine_execution().await?;
    let mut options =
        PipelineOptions::new(root.clone(), "dev").parameter("PollIntervalSeconds", "1");
    options.profile = "release".into();
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
        localstack::emulator::wait_until("bench build", Duration::from_secs(30), || async {
            Ok(builds.latest("bench", "dev").await?)
        })
        .await?;
    let stream_batch =
        localstack::emulator::wait_until("its stream batch", Duration::from_secs(30), || async {
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
        "{:<16} {:>10} {:>22} {:>14}",
        "function", "init ms", "init + 1st invoke ms", "peak RSS MB"
    );
    let hello_spec = FunctionSpec {
        name: "hello-lambda".into(),
        binary: root.join("target/release/hello-lambda"),
        env: pipeline.function_specs[0].env.clone(),
        timeout: Duration::from_secs(30),
        log_file: None,
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
    let mut s3_spec = pipeline.function_specs[0].clone();
    s3_spec.env.retain(|(k, _)| k != "BUILDS_TABLE");
    s3_spec
        .env
        .push(("BUILDS_TABLE".into(), quiet_table.into()));
    let tb_spec = pipeline.function_specs[1].clone();
    let dispatch_spec = pipeline.function_specs[2].clone();
    pipeline.ecs_fixture("app", &[("api", 3)]).await?;
    let mut event_id = 0u64;
    let mut version = 100u64;
    let mut hello_init = 0.0;
    for (label, spec) in [
        ("hello-lambda", hello_spec),
        ("s3-trigger", s3_spec),
        ("trigger-build", tb_spec),
        ("ci-dispatch", dispatch_spec),
    ] {
        let function = Function::serve(spec, localstack::emulator::REGION).await?;
        let mut inits = Vec::new();
        let mut totals = Vec::new();
        let mut rss = 0u64;
        for _ in 0..COLD_RUNS {
            let event = match label {
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
                _ => json!({}),
            };
            function.stop().await;
            function
                .invoke(&event)
                .await
                .map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
            let figures = function.figures().await;
            inits.push(figures.init.as_secs_f64() * 1000.0);
            totals.push(
                figures
                    .init_and_first_invoke
                    .unwrap_or_default()
                    .as_secs_f64()
                    * 1000.0,
            );
            rss = rss.max(function.peak_rss_kib().await.unwrap_or(0));
        }
        function.stop().await;
        let init = median(&mut inits);
        if label == "hello-lambda" {
            hello_init = init;
        }
        let ratio = if hello_init > 0.0 {
            format!("  ({:.2}x hello init)", init / hello_init)
        } else {
            String::new()
        };
        println!(
            "{:<16} {:>10.1} {:>22.1} {:>14.1}{ratio}",
            label,
            init,
            median(&mut totals),
            rss as f64 / 1024.0
        );
    }

    println!("\nRelease zips (dist/, from `make package`)");
    for name in ["s3-trigger", "trigger-build", "ci-dispatch"] {
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
    json!({"Records": [localstack::delivery::complete_s3_record(record)]})
}

/// Sorts in place and returns the median.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or_default()
}
