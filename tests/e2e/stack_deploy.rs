//! `make deploy` (scripts/deploy.py) into the emulator: Deployer's own stack
//! from `cloudformation.template`, created, updated to a new version, left
//! alone when nothing changed, and a failed first create reported by resource.
//!
//! The stack is deployed with the default parameters: no site (site-build's
//! resources are conditional on `SiteRepository`, and moto cannot create its
//! CloudFront, function URL and SES resources) and no alarm email. See
//! docs/local-stack.md, "Deploying the template into the emulator".

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{SystemTime, UNIX_EPOCH};

use deployer_e2e::root;
use local_stack::account::{ACCOUNT_ID, REGION};
use local_stack::emulator::venv_python;
use local_stack::Emulator;

const STACK: &str = "dev-deployer";
const CFN_ROLE: &str = "arn:aws:iam::123456789012:role/deployer-cloudformation";

/// Python from the project venv: `WRITE_ZIPS DIR NAME...` writes DIR/NAME.zip.
const WRITE_ZIPS: &str = r##"
import sys, zipfile
for name in sys.argv[2:]:
    with zipfile.ZipFile(f"{sys.argv[1]}/{name}.zip", "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
"##;

/// A stand-in for `make package`'s `dist/`: the emulator never runs the
/// functions, so a zip holding a file named `bootstrap` is enough.
struct Dist(PathBuf);

impl Dist {
    fn create() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "deployer-stack-deploy-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let zipped = std::process::Command::new(venv_python(&root()).unwrap())
            .arg("-c")
            .arg(WRITE_ZIPS)
            .arg(&dir)
            .args([
                "s3-trigger",
                "trigger-build",
                "ci-dispatch",
                "site-build",
                "site-builder",
                "gates",
            ])
            .status()
            .unwrap();
        assert!(zipped.success(), "writing the zips");
        std::fs::copy(
            root().join("state-machine/deployment.asl.json"),
            dir.join("deployment.asl.json"),
        )
        .unwrap();
        Self(dir)
    }
}

impl Drop for Dist {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the deploy script as `make deploy ENV=dev VERSION={version}` does,
/// with the emulator's endpoint, region and dummy credentials.
async fn deploy(emulator: &Emulator, dist: &Path, version: &str, extra: &[&str]) -> Output {
    tokio::process::Command::new(venv_python(&root()).unwrap())
        .arg(root().join("scripts/deploy.py"))
        .args(["--env", "dev", "--version", version, "--dist"])
        .arg(dist)
        .args(extra)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .envs(emulator.client_env())
        .output()
        .await
        .expect("running scripts/deploy.py")
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn cloudformation(emulator: &Emulator) -> aws_sdk_cloudformation::Client {
    aws_sdk_cloudformation::Client::new(&emulator.sdk_config().await)
}

/// The stack's status and parameters, from DescribeStacks.
async fn stack(cfn: &aws_sdk_cloudformation::Client) -> (String, Vec<(String, String)>) {
    deployer_e2e::describe_stack(cfn, STACK)
        .await
        .expect("the stack")
}

/// Resource types moto 5.2.5's CloudFormation does not implement among those
/// created with the default parameters: it logs a warning, skips them, and
/// the stack still completes.
const NOT_IN_MOTO: &[&str] = &[
    "AWS::CloudWatch::Alarm",
    "AWS::SQS::QueuePolicy",
    "AWS::S3::BucketPolicy",
];

/// The resources the stack should hold with the default parameters: those
/// without a `Condition` (every condition is off by default), less the types
/// moto skips.
fn template_resources() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("cloudformation.template")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut ids: Vec<String> = doc["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Condition"].is_null())
        .filter(|(_, r)| !NOT_IN_MOTO.iter().any(|t| r["Type"] == *t))
        .map(|(id, _)| id.clone())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_deploy_creates_the_stack_then_updates_it_to_the_new_version() {
    let emulator = Emulator::start(&root(), None)
        .await
        .expect("moto server starts");
    let dist = Dist::create();
    let cfn = cloudformation(&emulator).await;

    let first = deploy(
        &emulator,
        &dist.0,
        "0.1.0-aaaaaaa",
        &[
            "--cfn-role-arn",
            CFN_ROLE,
            "--parameter",
            "ProjectName=shop",
        ],
    )
    .await;
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        String::from_utf8_lossy(&first.stdout).contains("dev-deployer CREATE_COMPLETE"),
        "{}",
        text(&first)
    );
    let (status, params) = stack(&cfn).await;
    assert_eq!(status, "CREATE_COMPLETE");
    let param = |params: &[(String, String)], name: &str| {
        deployer_e2e::param(params, name).unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(param(&params, "CodePrefix"), "deployer/0.1.0-aaaaaaa/");
    let bucket = format!("dev-deployer-code-{ACCOUNT_ID}-{REGION}");
    assert_eq!(param(&params, "CodeBucket"), bucket);

    // Every resource the template declares for these parameters is in the stack
    // (moto also lists each resource it did not create, with no logical id).
    let listed = cfn
        .list_stack_resources()
        .stack_name(STACK)
        .send()
        .await
        .expect("ListStackResources");
    let mut created: Vec<String> = listed
        .stack_resource_summaries()
        .iter()
        .filter_map(|r| r.logical_resource_id())
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    created.sort();
    assert_eq!(created, template_resources());

    // The code, the definition and the template are under the versioned prefix.
    let s3 = aws_sdk_s3::Client::new(&emulator.sdk_config().await);
    let objects = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("deployer/0.1.0-aaaaaaa/")
        .send()
        .await
        .expect("ListObjectsV2");
    let mut keys: Vec<&str> = objects.contents().iter().filter_map(|o| o.key()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "deployer/0.1.0-aaaaaaa/ci-dispatch.zip",
            "deployer/0.1.0-aaaaaaa/cloudformation.template",
            "deployer/0.1.0-aaaaaaa/deployment.asl.json",
            "deployer/0.1.0-aaaaaaa/gates.zip",
            "deployer/0.1.0-aaaaaaa/s3-trigger.zip",
            "deployer/0.1.0-aaaaaaa/site-build.zip",
            "deployer/0.1.0-aaaaaaa/site-builder.zip",
            "deployer/0.1.0-aaaaaaa/trigger-build.zip",
        ]
    );

    // A new version: no role this time, the deployed values are kept.
    let second = deploy(&emulator, &dist.0, "0.1.0-bbbbbbb", &[]).await;
    assert!(second.status.success(), "{}", text(&second));
    let (status, params) = stack(&cfn).await;
    assert_eq!(status, "UPDATE_COMPLETE");
    assert_eq!(param(&params, "CodePrefix"), "deployer/0.1.0-bbbbbbb/");
    assert_eq!(param(&params, "CloudFormationRoleArn"), CFN_ROLE);
    assert_eq!(param(&params, "ProjectName"), "shop");

    // The same version again changes nothing and still succeeds.
    let again = deploy(&emulator, &dist.0, "0.1.0-bbbbbbb", &[]).await;
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("no changes"),
        "{}",
        text(&again)
    );
    assert_eq!(stack(&cfn).await.0, "UPDATE_COMPLETE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_first_make_deploy_names_the_resource_and_a_rerun_creates_the_stack_afresh() {
    let emulator = Emulator::start(&root(), None)
        .await
        .expect("moto server starts");
    let dist = Dist::create();
    let cfn = cloudformation(&emulator).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&emulator.sdk_config().await);
    // A table left behind under the name the stack's StacksTable takes.
    dynamodb
        .create_table()
        .table_name("dev-deployer-stacks")
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("stack_name")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("stack_name")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .expect("CreateTable");

    let failed = deploy(
        &emulator,
        &dist.0,
        "0.1.0-aaaaaaa",
        &["--cfn-role-arn", CFN_ROLE],
    )
    .await;
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("ROLLBACK_COMPLETE") && stderr.contains("StacksTable"),
        "{}",
        text(&failed)
    );
    assert_eq!(stack(&cfn).await.0, "ROLLBACK_COMPLETE");

    dynamodb
        .delete_table()
        .table_name("dev-deployer-stacks")
        .send()
        .await
        .expect("DeleteTable");
    let retried = deploy(
        &emulator,
        &dist.0,
        "0.1.0-aaaaaaa",
        &["--cfn-role-arn", CFN_ROLE],
    )
    .await;
    assert!(retried.status.success(), "{}", text(&retried));
    assert!(
        String::from_utf8_lossy(&retried.stdout)
            .contains("ROLLBACK_COMPLETE from a failed first create"),
        "{}",
        text(&retried)
    );
    assert_eq!(stack(&cfn).await.0, "CREATE_COMPLETE");
}

/// Dogfooding: the suite's own template, uploaded as CI uploads any app
/// (`{repo}/{branch}/{version}/`), is deployed by a running install through
/// its own pipeline: s3-trigger, the builds table, the state machine, a
/// change set. The inner install gets its own environment name, so its
/// resources sit beside the outer one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_install_deploys_the_next_one_from_a_versioned_upload() {
    let outer = deployer_e2e::TestStack::start("stg", &[]).await;
    let s3 = outer.pipeline.s3();
    let code_bucket = "deployer-code-dogfood";
    let prefix = "deployer/2.0.0-ccccccc/";
    s3.create_bucket()
        .bucket(code_bucket)
        .send()
        .await
        .expect("CreateBucket");
    let dist = Dist::create();
    for entry in std::fs::read_dir(&dist.0).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        s3.put_object()
            .bucket(code_bucket)
            .key(format!("{prefix}{name}"))
            .body(std::fs::read(&path).unwrap().into())
            .send()
            .await
            .expect("PutObject");
    }
    let template = std::fs::read_to_string(root().join("cloudformation.template")).unwrap();
    let params = serde_json::json!({
        "Environment": "inner",
        "CodeBucket": code_bucket,
        "CodePrefix": prefix,
        "CloudFormationRoleArn": CFN_ROLE,
    });
    outer
        .upload("deployer-inner", "main", "7.abcdef1", &template, params)
        .await;
    let build = outer.build_of("deployer-inner", "7.abcdef1").await;
    let done = outer.wait_terminal(&build.key()).await;
    assert_eq!(
        done.status,
        builddao::BuildStatus::Success,
        "{:?}",
        done.error_msg
    );
    let (status, params) = outer
        .stack("stg-deployer-inner")
        .await
        .expect("the inner install's stack exists");
    assert_eq!(status, "CREATE_COMPLETE");
    assert_eq!(
        deployer_e2e::param(&params, "Environment").as_deref(),
        Some("inner")
    );
    // The inner install's own pipeline resources exist, named for it.
    let dynamodb = aws_sdk_dynamodb::Client::new(&outer.pipeline.sdk);
    let tables = dynamodb.list_tables().send().await.unwrap();
    assert!(
        tables
            .table_names()
            .iter()
            .any(|t| t == "inner-deployer-builds"),
        "{:?}",
        tables.table_names()
    );
}
