//! The deployment pipeline of one environment, on the emulator: the
//! resources `cloudformation.template` declares, the real `s3-trigger`,
//! `trigger-build`, `ci-dispatch` and `site-build` binaries, and event
//! delivery wired as the template wires it; around site-build, the Lambda
//! API, its function URL, the site's viewer-facing server and a GitHub
//! double (see docs/local-stack.md).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::account::RoleCredentials;
use crate::account::REGION;
use crate::delivery::{self, DeadLetters, DeliveryLog};
use crate::emulator::Emulator;
use crate::function_url::FunctionUrlServer;
use crate::github::{GitHubDouble, GitHubOptions};
use crate::http_doubles::{RecordingProxy, WebhookSink};
use crate::iam::FunctionRoles;
use crate::kvs::KvsDouble;
use crate::lambda_api::LambdaApi;
use crate::runtime::{built_binary, Function, FunctionSpec, Sandbox};
use crate::site_server::SiteServer;
use crate::wiring::{StreamMapping, Template};

/// The webhook secret the local stack puts in SSM unless told otherwise.
pub const LOCAL_GITHUB_SECRET: &str = "local-webhook-secret-0123456789abcdef";
/// The GitHub token the local stack gives site-build (and its GitHub double).
pub const LOCAL_GITHUB_TOKEN: &str = "ghp_local0123456789abcdefghijklmnopqrstuv";
/// The site repository when the template names none.
pub const LOCAL_SITE_REPOSITORY: &str = "acme/sample-site";

/// How to bring up one environment's pipeline.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Repository root (holds the template, the ASL and the venv).
    pub root: PathBuf,
    /// Cargo target directory and profile the function binaries come from.
    pub target_dir: PathBuf,
    pub profile: String,
    pub env: String,
    /// Template parameter overrides (e.g. short poll intervals for tests).
    pub parameters: Vec<(String, String)>,
    /// Where function logs go; `None` discards them.
    pub log_dir: Option<PathBuf>,
    /// Function environment set on top of the template's (logical id, name, value).
    pub env_overrides: Vec<(String, String, String)>,
    /// The git repository the GitHub double serves as the site repository;
    /// `None`: it serves no commits (webhooks still work, builds fail to fetch).
    pub site_repo: Option<PathBuf>,
    /// The webhook secret put in SSM for site-build.
    pub github_secret: String,
    /// A GitHub token for site-build (put in SSM, required by the double);
    /// `None`: site-build gets none, so it reports no deployment statuses.
    pub github_token: Option<String>,
    /// `EMAIL_SENDERS` for site-build (empty: the template's value).
    pub email_senders: Vec<String>,
    /// Most site-build execution environments at once.
    pub site_build_concurrency: usize,
    /// Function timeouts instead of the template's `Timeout` (logical id,
    /// timeout), so a test can run a function past its timeout quickly.
    pub timeouts: Vec<(String, Duration)>,
    /// How long CloudFormation keeps change sets pending and stack
    /// operations in progress; zero finishes them inside the call.
    pub cloudformation_pace: Duration,
    /// The wait before the first retry of an asynchronous invocation (the
    /// second waits twice as long); AWS waits about a minute.
    pub async_retry_delay: Duration,
}

impl PipelineOptions {
    pub fn new(root: PathBuf, env: &str) -> Self {
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        Self {
            root,
            target_dir,
            profile: "debug".to_owned(),
            env: env.to_owned(),
            parameters: Vec::new(),
            log_dir: None,
            env_overrides: Vec::new(),
            site_repo: None,
            github_secret: LOCAL_GITHUB_SECRET.to_owned(),
            github_token: Some(LOCAL_GITHUB_TOKEN.to_owned()),
            email_senders: Vec::new(),
            site_build_concurrency: 4,
            timeouts: Vec::new(),
            cloudformation_pace: Duration::ZERO,
            async_retry_delay: crate::lambda_api::ASYNC_RETRY_DELAY,
        }
    }

    pub fn parameter(mut self, name: &str, value: impl Into<String>) -> Self {
        self.parameters.push((name.to_owned(), value.into()));
        self
    }

    /// A function's timeout: the override for `function_id`, else the template's.
    fn timeout(&self, template: &Template, function_id: &str) -> Duration {
        self.timeouts
            .iter()
            .find(|(id, _)| id == function_id)
            .map(|(_, timeout)| *timeout)
            .unwrap_or_else(|| Duration::from_secs(template.function_timeout(function_id)))
    }
}

/// Names of the pipeline's resources, as the template names them.
#[derive(Debug, Clone)]
pub struct Resources {
    pub env: String,
    pub bucket: String,
    pub builds_table: String,
    pub stacks_table: String,
    pub stream_arn: String,
    pub state_machine_arn: String,
    pub approval_topic_arn: String,
    pub s3_event_queue_url: String,
    pub dispatch_table: String,
    /// The ledger of ECS redeploys ci-dispatch writes.
    pub service_deployments_table: String,
    pub events_queue_url: String,
}

/// site-build's resources, as the template names them.
#[derive(Debug, Clone)]
pub struct SiteResources {
    pub function_name: String,
    pub bucket: String,
    pub deployments_table: String,
    /// The CloudFront distribution created on the emulator (its name is in
    /// the URLs the template gives; site-build never calls CloudFront).
    pub distribution_id: String,
    /// `owner/name` the function publishes (`SITE_REPOSITORY`).
    pub repository: String,
    pub secret_parameter: String,
    /// Empty when site-build has no token.
    pub token_parameter: String,
    /// The function's `/tmp`: its build work folder.
    pub work_dir: PathBuf,
    /// The site builder function's name.
    pub builder_name: String,
}

pub struct Pipeline {
    pub emulator: Arc<Emulator>,
    pub resources: Resources,
    pub s3_trigger: Arc<Function>,
    pub trigger_build: Arc<Function>,
    pub ci_dispatch: Arc<Function>,
    /// Stands in front of ECS for ci-dispatch: records its calls.
    pub ecs_proxy: RecordingProxy,
    /// Where ci-dispatch posts its Slack messages.
    pub slack: WebhookSink,
    pub stream_mapping: StreamMapping,
    /// How each function was started (for starting extra instances).
    pub function_specs: Vec<FunctionSpec>,
    pub dead_letters: DeadLetters,
    pub delivered: DeliveryLog,
    pub sdk: aws_config::SdkConfig,
    /// The real site-build binary (started on its first invocation).
    pub site_build: Arc<Function>,
    /// The site builder, where repository code runs: each environment as
    /// a user of its own when the local stack can ([`Sandbox`]).
    pub site_builder: Arc<Function>,
    /// The state machine's gates (policy, freeze windows, bake, rollback).
    pub gates: Arc<Function>,
    /// The Lambda API every function reaches through `AWS_ENDPOINT_URL_LAMBDA`.
    pub lambda_api: LambdaApi,
    /// site-build's function URL: where GitHub webhooks are posted.
    pub function_url: String,
    pub function_url_server: FunctionUrlServer,
    /// The site as viewers see it (CloudFront and the router in AWS).
    pub site: SiteServer,
    /// The CloudFront KeyValueStore the router reads (`LIVE_STORE_ARN`).
    pub kvs: KvsDouble,
    pub github: GitHubDouble,
    /// The webhook secret site-build reads from SSM.
    pub github_secret: String,
    pub site_resources: SiteResources,
    /// The role session each function runs with.
    pub roles: FunctionRoles,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        let _ = std::fs::remove_dir_all(&self.site_resources.work_dir);
        let _ = std::fs::remove_dir_all(self.site_resources.work_dir.with_extension("builder"));
    }
}

impl Pipeline {
    /// Creates the resources and starts the functions and event delivery.
    pub async fn start(emulator: Arc<Emulator>, options: PipelineOptions) -> anyhow::Result<Self> {
        let mut template = Template::load(&options.root.join("cloudformation.template"))?;
        template.set("Environment", options.env.clone());
        // The install's own stack, as `make deploy` names it.
        template.set("AWS::StackName", format!("{}-deployer", options.env));
        for (name, value) in &options.parameters {
            template.set(name, value.clone());
        }
        template.name_roles();
        let sdk = emulator.sdk_config().await;
        emulator
            .faults()
            .set_cloudformation_pace(options.cloudformation_pace)
            .await?;
        let resources = provision(&emulator, &sdk, &mut template, &options).await?;
        let site = provision_site(&sdk, &mut template, &options).await?;
        // Each function signs with a session of its own template role, named
        // after the function (how the fault engine tells callers apart).
        let roles = FunctionRoles::install(&emulator, &template).await?;

        let binaries = |name: &str| built_binary(&options.target_dir, &options.profile, name);
        let function_name = |short: &str| format!("{}-deployer-{short}", options.env);
        let env_for = |function_id: &str| -> anyhow::Result<Vec<(String, String)>> {
            let mut env = template.function_env(function_id)?;
            env.extend(roles.client_env(&emulator, function_id)?);
            for (id, name, value) in &options.env_overrides {
                if id == function_id {
                    env.retain(|(k, _)| k != name);
                    env.push((name.clone(), value.clone()));
                }
            }
            Ok(env)
        };
        let log = |name: &str| {
            options
                .log_dir
                .as_ref()
                .map(|dir| dir.join(format!("{}-{name}.log", options.env)))
        };
        let mut function_specs = vec![
            FunctionSpec {
                name: function_name("s3-trigger"),
                binary: binaries("s3-trigger")?,
                env: env_for("S3TriggerFunction")?,
                timeout: options.timeout(&template, "S3TriggerFunction"),
                log_file: log("s3-trigger"),
                sandbox: None,
            },
            FunctionSpec {
                name: function_name("trigger-build"),
                binary: binaries("trigger-build")?,
                env: env_for("TriggerBuildFunction")?,
                timeout: options.timeout(&template, "TriggerBuildFunction"),
                log_file: log("trigger-build"),
                sandbox: None,
            },
        ];
        let ecs_proxy = RecordingProxy::start(&emulator.endpoint).await?;
        let slack = WebhookSink::start().await?;
        // ci-dispatch reaches ECS through the recording proxy and posts to
        // the local Slack sink, unless the template's webhook parameter is set.
        let mut dispatch_env = env_for("CiDispatchFunction")?;
        dispatch_env.push(("AWS_ENDPOINT_URL_ECS".into(), ecs_proxy.endpoint.clone()));
        let slack_parameter_set = dispatch_env
            .iter()
            .any(|(k, v)| k == "SLACK_WEBHOOK_PARAMETER" && !v.is_empty());
        if !slack_parameter_set {
            dispatch_env.push(("SLACK_WEBHOOK_URL".into(), slack.url.clone()));
        }
        function_specs.push(FunctionSpec {
            name: function_name("ci-dispatch"),
            binary: binaries("ci-dispatch")?,
            env: dispatch_env,
            timeout: options.timeout(&template, "CiDispatchFunction"),
            log_file: log("ci-dispatch"),
            sandbox: None,
        });
        let s3_trigger = Function::serve(function_specs[0].clone(), REGION).await?;
        let ci_dispatch = Function::serve(function_specs[2].clone(), REGION).await?;
        let trigger_build = Function::serve(function_specs[1].clone(), REGION).await?;
        let stream_mapping = template.stream_mapping("TriggerBuildEventSourceMapping")?;
        let dead_letters = DeadLetters::default();
        let delivered = DeliveryLog::default();

        // site-build: the servers around it, then the function.
        let lambda_api = LambdaApi::start_with_retry_delay(
            delivered.clone(),
            dead_letters.clone(),
            options.async_retry_delay,
        )
        .await?;
        let github = GitHubDouble::start(GitHubOptions {
            repository: site.resources.repository.clone(),
            repo_dir: options.site_repo.clone(),
            token: options.github_token.clone(),
        })
        .await?;
        let kvs = KvsDouble::start(&format!("{}-deployer-site-live", options.env)).await?;
        let site_server = SiteServer::start(
            aws_sdk_s3::Client::new(&sdk),
            &site.resources.bucket,
            kvs.clone(),
        )
        .await?;
        let mut site_env = site.env.clone();
        site_env.extend(roles.client_env(&emulator, "SiteBuildFunction")?);
        let slack_parameter_set = site_env
            .iter()
            .any(|(k, v)| k == "SLACK_WEBHOOK_PARAMETER" && !v.is_empty());
        let mut local = vec![
            ("AWS_ENDPOINT_URL_LAMBDA", lambda_api.endpoint.clone()),
            ("GITHUB_API_URL", github.api_url.clone()),
            ("PRODUCTION_URL", site_server.production_url()),
            ("STAGING_URL", site_server.staging_url()),
            ("PREVIEW_URL_TEMPLATE", site_server.preview_url_template()),
            ("LIVE_STORE_ARN", kvs.arn.clone()),
            (
                "AWS_ENDPOINT_URL_CLOUDFRONT_KEYVALUESTORE",
                kvs.endpoint_url(),
            ),
            ("BUILDER_FUNCTION", site.resources.builder_name.clone()),
            ("SITE_REPOSITORY", site.resources.repository.clone()),
            (
                "GITHUB_SECRET_PARAMETER",
                site.resources.secret_parameter.clone(),
            ),
            (
                "GITHUB_TOKEN_PARAMETER",
                site.resources.token_parameter.clone(),
            ),
            (
                "SITE_WORK_DIR",
                site.resources.work_dir.display().to_string(),
            ),
        ];
        if !slack_parameter_set {
            local.push(("SLACK_WEBHOOK_URL", slack.url.clone()));
        }
        if !options.email_senders.is_empty() {
            local.push(("EMAIL_SENDERS", options.email_senders.join(",")));
        }
        for (name, value) in local {
            site_env.retain(|(k, _)| k != name);
            site_env.push((name.to_owned(), value));
        }
        for (id, name, value) in &options.env_overrides {
            if id == "SiteBuildFunction" {
                site_env.retain(|(k, _)| k != name);
                site_env.push((name.clone(), value.clone()));
            }
        }
        // Not required up front: the pipeline starts without it, and the
        // first invocation reports a missing binary as an init error.
        let site_binary = options.target_dir.join(&options.profile).join("site-build");
        if !site_binary.is_file() {
            tracing::warn!(
                binary = %site_binary.display(),
                "site-build is not built; its invocations will fail until it is"
            );
        }
        function_specs.push(FunctionSpec {
            name: site.resources.function_name.clone(),
            binary: site_binary,
            env: site_env,
            timeout: options
                .timeouts
                .iter()
                .find(|(id, _)| id == "SiteBuildFunction")
                .map_or(site.timeout, |(_, timeout)| *timeout),
            log_file: log("site-build"),
            sandbox: None,
        });
        let site_build = Function::serve_scaled(
            function_specs[3].clone(),
            REGION,
            options.site_build_concurrency,
        )
        .await?;
        let builder_spec = builder_spec(
            &template,
            &options,
            &emulator,
            &roles,
            &site,
            log("site-builder"),
        )?;
        function_specs.push(builder_spec.clone());
        let site_builder =
            Function::serve_scaled(builder_spec, REGION, options.site_build_concurrency).await?;
        // gates: invoked by the state machine through the Lambda API. Smoke
        // checks may GET plain HTTP on loopback here (docs/local-stack.md).
        let mut gates_env = env_for("GatesFunction")?;
        gates_env.push((
            "AWS_ENDPOINT_URL_LAMBDA".into(),
            lambda_api.endpoint.clone(),
        ));
        gates_env.push(("SMOKE_HTTP_LOOPBACK".into(), "true".into()));
        let gates_spec = FunctionSpec {
            name: function_name("gates"),
            binary: binaries("gates")?,
            env: gates_env,
            timeout: options.timeout(&template, "GatesFunction"),
            log_file: log("gates"),
            sandbox: None,
        };
        function_specs.push(gates_spec.clone());
        let gates = Function::serve(gates_spec, REGION).await?;
        for function in [
            &s3_trigger,
            &trigger_build,
            &ci_dispatch,
            &site_build,
            &site_builder,
            &gates,
        ] {
            lambda_api.register((*function).clone());
        }
        // The Lambda API lets in whom IAM would: each function as its
        // role allows, the operator (tests, the CLI) for everything.
        // So does the KeyValueStore, which also checks signatures with the
        // callers' own keys.
        for (key, actions) in roles.allowed_actions() {
            lambda_api.allow(key, actions.to_vec());
            kvs.allow(key, actions.to_vec());
        }
        lambda_api.allow(crate::account::ADMIN_ACCESS_KEY, vec!["*".to_owned()]);
        // The state machine invokes the gates function as its role allows.
        let state_machine_role =
            template.resolve(&json!({"Fn::GetAtt": ["StateMachineRole", "Arn"]}));
        let interpreter_key = emulator
            .route_interpreter_lambda(&state_machine_role, &lambda_api.endpoint)
            .await?;
        let state_machine_actions = template
            .iam_roles()
            .into_iter()
            .find(|role| role.logical_id == "StateMachineRole")
            .map(|role| role.allowed_actions())
            .unwrap_or_default();
        lambda_api.allow(&interpreter_key, state_machine_actions);
        kvs.allow(crate::account::ADMIN_ACCESS_KEY, vec!["*".to_owned()]);
        for spec in &function_specs {
            kvs.register_env(&spec.env);
        }
        kvs.register_env(&emulator.client_env());
        let function_url_server = FunctionUrlServer::start(site_build.clone()).await?;
        lambda_api.set_function_url(site_build.name(), &function_url_server.url)?;
        let tasks = vec![
            tokio::spawn(delivery::run_queue_delivery(
                emulator.clone(),
                resources.s3_event_queue_url.clone(),
                s3_trigger.clone(),
                delivery::s3_notification,
                options.async_retry_delay,
                dead_letters.clone(),
                delivered.clone(),
            )),
            tokio::spawn(delivery::run_queue_delivery(
                emulator.clone(),
                resources.events_queue_url.clone(),
                ci_dispatch.clone(),
                delivery::eventbridge_event,
                options.async_retry_delay,
                dead_letters.clone(),
                delivered.clone(),
            )),
            tokio::spawn(delivery::run_stream_delivery(
                emulator.clone(),
                resources.stream_arn.clone(),
                stream_mapping.clone(),
                trigger_build.clone(),
                dead_letters.clone(),
                delivered.clone(),
            )),
        ];
        Ok(Self {
            emulator,
            resources,
            s3_trigger,
            trigger_build,
            ci_dispatch,
            ecs_proxy,
            slack,
            stream_mapping,
            function_specs,
            dead_letters,
            delivered,
            sdk,
            site_build,
            site_builder,
            gates,
            lambda_api,
            function_url: function_url_server.url.clone(),
            function_url_server,
            site: site_server,
            kvs,
            github,
            github_secret: options.github_secret.clone(),
            site_resources: site.resources,
            roles,
            tasks,
        })
    }

    /// The credentials of `function_id`'s role session (a template logical id).
    pub fn function_credentials(&self, function_id: &str) -> anyhow::Result<RoleCredentials> {
        self.roles.credentials(function_id).cloned()
    }

    /// SDK configuration that signs as `function_id` does: with its role session.
    pub async fn function_sdk_config(
        &self,
        function_id: &str,
    ) -> anyhow::Result<aws_config::SdkConfig> {
        Ok(self
            .emulator
            .sdk_config_as(self.roles.credentials(function_id)?)
            .await)
    }

    pub fn builds(&self) -> builddao::BuildStore {
        builddao::BuildStore::new(
            aws_sdk_dynamodb::Client::new(&self.sdk),
            &self.resources.builds_table,
        )
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::new(&self.sdk)
    }

    /// Environment for the `deployer` CLI aimed at this pipeline.
    pub fn cli_env(&self) -> Vec<(String, String)> {
        let mut env = self.emulator.client_env();
        env.push(("DEPLOYER_ENV".into(), self.resources.env.clone()));
        env.push((
            "DEPLOYER_BUILDS_TABLE".into(),
            self.resources.builds_table.clone(),
        ));
        env.push((
            "DEPLOYER_STACKS_TABLE".into(),
            self.resources.stacks_table.clone(),
        ));
        env.push((
            "DEPLOYER_SITE_TABLE".into(),
            self.site_resources.deployments_table.clone(),
        ));
        env.push((
            "DEPLOYER_SITE_FUNCTION".into(),
            self.site_resources.function_name.clone(),
        ));
        env.push((
            "DEPLOYER_SERVICE_TABLE".into(),
            self.resources.service_deployments_table.clone(),
        ));
        env.push((
            "DEPLOYER_SITE_REPOSITORY".into(),
            self.site_resources.repository.clone(),
        ));
        env.push((
            "DEPLOYER_DISPATCH_FUNCTION".into(),
            self.ci_dispatch.name().to_owned(),
        ));
        // Lambda's API is the local stand-in, not moto's.
        env.push((
            "AWS_ENDPOINT_URL_LAMBDA".into(),
            self.lambda_api.endpoint.clone(),
        ));
        env
    }

    /// Uploads a build's artifacts, trigger file last, as CI does.
    pub async fn upload(&self, prefix: &str, files: &[(&str, Vec<u8>)]) -> anyhow::Result<()> {
        let s3 = self.s3();
        let (trigger, rest): (Vec<_>, Vec<_>) = files
            .iter()
            .partition(|(name, _)| *name == "cloudformation-params.json");
        for (name, body) in rest.into_iter().chain(trigger) {
            s3.put_object()
                .bucket(&self.resources.bucket)
                .key(format!("{prefix}{name}"))
                .body(body.clone().into())
                .send()
                .await
                .with_context(|| format!("uploading {prefix}{name}"))?;
        }
        Ok(())
    }

    /// `PutEvents` on the default bus, as `aws events put-events` does.
    pub async fn put_events(&self, entries: &[Value]) -> anyhow::Result<Value> {
        let entries: Vec<Value> = entries
            .iter()
            .map(|e| {
                json!({
                    "Source": e["source"],
                    "DetailType": e["detail-type"],
                    "Detail": e["detail"].to_string(),
                    "Resources": e.get("resources").cloned().unwrap_or(json!([])),
                })
            })
            .collect();
        self.emulator
            .json_call("events", "AWSEvents.PutEvents", json!({"Entries": entries}))
            .await
    }

    /// A small ECS estate for project `project` in this environment, named
    /// by the template's default patterns: a cluster and one service per
    /// name, each family with `revisions` task definition revisions.
    pub async fn ecs_fixture(
        &self,
        project: &str,
        services: &[(&str, usize)],
    ) -> anyhow::Result<()> {
        let env = &self.resources.env;
        let ecs = aws_sdk_ecs::Client::new(&self.sdk);
        let cluster = format!("{project}_cluster_{env}");
        ecs.create_cluster()
            .cluster_name(&cluster)
            .send()
            .await
            .context("creating the ECS cluster")?;
        for (name, revisions) in services {
            let family = if *name == "backend" {
                format!("{project}_backend_{env}")
            } else {
                format!("{project}_service_{name}_{env}")
            };
            for _ in 0..*revisions {
                ecs.register_task_definition()
                    .family(&family)
                    .container_definitions(
                        aws_sdk_ecs::types::ContainerDefinition::builder()
                            .name("app")
                            .image(format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/{project}_service_{name}:latest"))
                            .memory(128)
                            .build(),
                    )
                    .send()
                    .await
                    .with_context(|| format!("registering {family}"))?;
            }
            ecs.create_service()
                .cluster(&cluster)
                .service_name(&family)
                .task_definition(format!("{family}:1"))
                .desired_count(1)
                .send()
                .await
                .with_context(|| format!("creating service {family}"))?;
        }
        Ok(())
    }

    pub async fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
        self.s3_trigger.stop().await;
        self.trigger_build.stop().await;
        self.ci_dispatch.stop().await;
        self.site_build.stop().await;
        self.site_builder.stop().await;
    }

    /// Posts a GitHub webhook delivery to site-build's function URL as
    /// GitHub sends it: JSON, signed (`X-Hub-Signature-256`) with the
    /// pipeline's secret. Answers the HTTP status and body.
    pub async fn github_webhook(
        &self,
        event: &str,
        delivery: &str,
        payload: &Value,
    ) -> anyhow::Result<(u16, String)> {
        let body = payload.to_string();
        let secret = site_build::WebhookSecret::new(self.github_secret.as_bytes())
            .map_err(|_| anyhow::anyhow!("the webhook secret is empty"))?;
        let signature = secret.sign(body.as_bytes());
        let response = reqwest::Client::new()
            .post(&self.function_url)
            .header("content-type", "application/json")
            .header("user-agent", "GitHub-Hookshot/local")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("x-github-hook-id", "1")
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
            .await
            .context("posting the webhook to the function URL")?;
        let status = response.status().as_u16();
        Ok((status, response.text().await.unwrap_or_default()))
    }

    /// A Lambda client aimed at the local Lambda API, as the functions get it.
    pub fn lambda(&self) -> aws_sdk_lambda::Client {
        self.lambda_api.client(&self.sdk)
    }
}

/// What `provision_site` made, and the function's environment from the template.
/// The site builder: the template's function, its environment and timeout,
/// run in a [`Sandbox`] when this process may start others as another
/// user (otherwise as this user, and its builds are not isolated).
fn builder_spec(
    template: &Template,
    options: &PipelineOptions,
    emulator: &Emulator,
    roles: &FunctionRoles,
    site: &ProvisionedSite,
    log_file: Option<PathBuf>,
) -> anyhow::Result<FunctionSpec> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = site.resources.builder_name.clone();
    let mut env = template.function_env("SiteBuilderFunction")?;
    env.extend(roles.client_env(emulator, "SiteBuilderFunction")?);
    let sandbox = Sandbox::available().then(|| Sandbox {
        // Users no other pipeline (of this or another test process) has.
        first_uid: 1_000_000
            + (std::process::id() % 100_000) * 1_000
            + (NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 125) * 8,
        tmp_root: site.resources.work_dir.with_extension("builder"),
    });
    let local = [
        ("NPM_PATH", "npm"),
        (
            "BUILD_SANDBOX_USER",
            if sandbox.is_some() {
                "dedicated"
            } else {
                "shared"
            },
        ),
    ];
    for (key, value) in local {
        env.retain(|(k, _)| k != key);
        env.push((key.to_owned(), value.to_owned()));
    }
    for (id, key, value) in &options.env_overrides {
        if id == "SiteBuilderFunction" {
            env.retain(|(k, _)| k != key);
            env.push((key.clone(), value.clone()));
        }
    }
    Ok(FunctionSpec {
        name,
        binary: options
            .target_dir
            .join(&options.profile)
            .join("site-builder"),
        env,
        timeout: options.timeout(template, "SiteBuilderFunction"),
        log_file,
        sandbox,
    })
}

struct ProvisionedSite {
    resources: SiteResources,
    env: Vec<(String, String)>,
    timeout: Duration,
}

/// site-build's bucket, table, distribution and secrets. The template's
/// `SiteBucket`, `SiteDeploymentsTable` and `SiteBuildFunction` name them;
/// without them, the names docs/site-build.md gives.
async fn provision_site(
    sdk: &aws_config::SdkConfig,
    template: &mut Template,
    options: &PipelineOptions,
) -> anyhow::Result<ProvisionedSite> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let env = &options.env;
    let named = |template: &Template, id: &str, property: &str, default: String| {
        template
            .resource(id)
            .ok()
            .and_then(|props| props.get(property))
            .map(|v| template.resolve(v))
            .filter(|name| !name.is_empty() && !name.contains("<unresolved"))
            .unwrap_or(default)
    };

    // Bucket.
    let bucket = named(
        template,
        "SiteBucket",
        "BucketName",
        format!("{env}-deployer-sites-local"),
    );
    aws_sdk_s3::Client::new(sdk)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .with_context(|| format!("creating bucket {bucket}"))?;
    template.set("SiteBucket", bucket.clone());
    template.set("SiteBucket.Arn", format!("arn:aws:s3:::{bucket}"));
    template.set(
        "SiteBucket.RegionalDomainName",
        format!("{bucket}.s3.{REGION}.amazonaws.com"),
    );

    // Deployments table: pk/sk, TTL on expires_at (or as the template says).
    let table = named(
        template,
        "SiteDeploymentsTable",
        "TableName",
        format!("{env}-deployer-site-deployments"),
    );
    let ttl_attribute = template
        .resource("SiteDeploymentsTable")
        .ok()
        .and_then(|props| props.pointer("/TimeToLiveSpecification/AttributeName"))
        .map(|v| template.resolve(v))
        .unwrap_or_else(|| "expires_at".to_owned());
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    dynamodb
        .create_table()
        .table_name(&table)
        .attribute_definitions(string_key("pk")?)
        .attribute_definitions(string_key("sk")?)
        .attribute_definitions(string_key("site")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .global_secondary_indexes(ledger_index("site")?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .with_context(|| format!("creating table {table}"))?;
    dynamodb
        .update_time_to_live()
        .table_name(&table)
        .time_to_live_specification(
            aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
                .attribute_name(&ttl_attribute)
                .enabled(true)
                .build()?,
        )
        .send()
        .await
        .with_context(|| format!("enabling TTL on {table}"))?;
    template.set("SiteDeploymentsTable", table.clone());
    template.set(
        "SiteDeploymentsTable.Arn",
        format!(
            "arn:aws:dynamodb:{REGION}:{}:table/{table}",
            crate::account::ACCOUNT_ID
        ),
    );

    // The distribution the template's URLs name (the viewer side is the SiteServer).
    let distribution_id = create_distribution(sdk, &bucket, env).await?;
    template.set("SiteDistribution", distribution_id.clone());

    // The function: name, environment and timeout from the template.
    let function_name = named(
        template,
        "SiteBuildFunction",
        "FunctionName",
        format!("{env}-deployer-site-build"),
    );
    template.set("SiteBuildFunction", function_name.clone());
    template.set(
        "SiteBuildFunction.Arn",
        format!(
            "arn:aws:lambda:{REGION}:{}:function:{function_name}",
            crate::account::ACCOUNT_ID
        ),
    );
    let builder_name = named(
        template,
        "SiteBuilderFunction",
        "FunctionName",
        format!("{env}-deployer-site-builder"),
    );
    template.set("SiteBuilderFunction", builder_name.clone());
    let (mut env_vars, timeout) = if template.resource("SiteBuildFunction").is_ok() {
        (
            template
                .function_env("SiteBuildFunction")
                .unwrap_or_default(),
            template.function_timeout("SiteBuildFunction"),
        )
    } else {
        (Vec::new(), 900)
    };
    let value_of = |vars: &[(String, String)], name: &str| {
        vars.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty() && !v.contains("<unresolved"))
    };
    let defaults = [
        ("DEPLOY_ENV", env.clone()),
        ("SITE_BUCKET", bucket.clone()),
        ("SITE_DEPLOYMENTS_TABLE", table.clone()),
        ("PRODUCTION_BRANCH", "main".to_owned()),
        ("STAGING_ON_PULL_REQUEST", "false".to_owned()),
        ("APPROVAL_TTL_SECONDS", "86400".to_owned()),
        ("PREVIEW_TTL_DAYS", "30".to_owned()),
    ];
    for (name, value) in defaults {
        if value_of(&env_vars, name).is_none() {
            env_vars.retain(|(k, _)| k != name);
            env_vars.push((name.to_owned(), value));
        }
    }
    let repository =
        value_of(&env_vars, "SITE_REPOSITORY").unwrap_or_else(|| LOCAL_SITE_REPOSITORY.to_owned());

    // Secrets in SSM, as SecureStrings.
    let ssm = aws_sdk_ssm::Client::new(sdk);
    let secret_parameter = value_of(&env_vars, "GITHUB_SECRET_PARAMETER")
        .unwrap_or_else(|| format!("/{env}/deployer/site/github-webhook-secret"));
    let token_parameter = match &options.github_token {
        Some(_) => value_of(&env_vars, "GITHUB_TOKEN_PARAMETER")
            .unwrap_or_else(|| format!("/{env}/deployer/site/github-token")),
        None => String::new(),
    };
    let mut secrets = vec![(secret_parameter.clone(), options.github_secret.clone())];
    if let Some(token) = &options.github_token {
        secrets.push((token_parameter.clone(), token.clone()));
    }
    for (name, value) in secrets {
        ssm.put_parameter()
            .name(&name)
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .overwrite(true)
            .send()
            .await
            .with_context(|| format!("putting SSM parameter {name}"))?;
    }

    // The function's own /tmp (each Lambda environment has its own).
    let work_dir = std::env::temp_dir().join(format!(
        "deployer-local-{env}-{}-{}-site-build",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;
    Ok(ProvisionedSite {
        resources: SiteResources {
            function_name,
            builder_name,
            bucket,
            deployments_table: table,
            distribution_id,
            repository,
            secret_parameter,
            token_parameter,
            work_dir,
        },
        env: env_vars,
        timeout: Duration::from_secs(timeout),
    })
}

/// A CloudFront distribution in front of the site bucket, on the emulator.
async fn create_distribution(
    sdk: &aws_config::SdkConfig,
    bucket: &str,
    env: &str,
) -> anyhow::Result<String> {
    use aws_sdk_cloudfront::types::{
        DefaultCacheBehavior, DistributionConfig, Origin, Origins, S3OriginConfig,
        ViewerProtocolPolicy,
    };
    let origin = Origin::builder()
        .id("site")
        // moto wants an S3 origin's domain to end in amazonaws.com.
        .domain_name(format!("{bucket}.s3.{REGION}.amazonaws.com"))
        .s3_origin_config(S3OriginConfig::builder().origin_access_identity("").build())
        .build()?;
    let config = DistributionConfig::builder()
        .caller_reference(format!("deployer-local-{env}-site"))
        .comment(format!("{env} deployer site (local)"))
        .enabled(true)
        .origins(Origins::builder().quantity(1).items(origin).build()?)
        .default_cache_behavior(
            DefaultCacheBehavior::builder()
                .target_origin_id("site")
                .viewer_protocol_policy(ViewerProtocolPolicy::RedirectToHttps)
                .build()?,
        )
        .build()?;
    let created = aws_sdk_cloudfront::Client::new(sdk)
        .create_distribution()
        .distribution_config(config)
        .send()
        .await
        .context("creating the site's CloudFront distribution")?;
    Ok(created
        .distribution()
        .context("CreateDistribution returned no distribution")?
        .id()
        .to_owned())
}

async fn provision(
    emulator: &Emulator,
    sdk: &aws_config::SdkConfig,
    template: &mut Template,
    options: &PipelineOptions,
) -> anyhow::Result<Resources> {
    let env = options.env.clone();
    let name_of = |template: &Template, id: &str, property: &str| -> anyhow::Result<String> {
        let props = template.resource(id)?;
        let value = props
            .get(property)
            .with_context(|| format!("{id} has no {property}"))?;
        Ok(template.resolve(value))
    };

    // Tables.
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let builds_table = name_of(template, "BuildsTable", "TableName")?;
    let stacks_table = name_of(template, "StacksTable", "TableName")?;
    let created = dynamodb
        .create_table()
        .table_name(&builds_table)
        .attribute_definitions(string_key("pk")?)
        .attribute_definitions(string_key("sk")?)
        .attribute_definitions(string_key("env")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .global_secondary_indexes(ledger_index("env")?)
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()?,
        )
        .send()
        .await
        .with_context(|| format!("creating table {builds_table}"))?;
    let stream_arn = created
        .table_description()
        .and_then(|t| t.latest_stream_arn())
        .context("builds table has no stream")?
        .to_owned();
    dynamodb
        .create_table()
        .table_name(&stacks_table)
        .attribute_definitions(string_key("stack_name")?)
        .key_schema(key("stack_name", KeyType::Hash)?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .with_context(|| format!("creating table {stacks_table}"))?;
    template.set("BuildsTable", builds_table.clone());
    template.set("BuildsTable.StreamArn", stream_arn.clone());
    template.set("StacksTable", stacks_table.clone());

    // Approval topic.
    let topic_name = name_of(template, "ApprovalTopic", "TopicName")?;
    let created = emulator
        .query_call(
            "sns",
            &[
                ("Action", "CreateTopic"),
                ("Name", &topic_name),
                ("Version", "2010-03-31"),
            ],
        )
        .await?;
    let approval_topic_arn = between(&created, "<TopicArn>", "</TopicArn>")
        .context("CreateTopic returned no TopicArn")?
        .to_owned();
    template.set("ApprovalTopic", approval_topic_arn.clone());

    // Bucket; its notifications reach the local stack through an SQS queue
    // (moto cannot invoke a function), with the template's event and filter.
    let bucket = name_of(template, "ArtifactBucket", "BucketName")?;
    let s3 = aws_sdk_s3::Client::new(sdk);
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .with_context(|| format!("creating bucket {bucket}"))?;
    template.set("ArtifactBucket", bucket.clone());
    let queue_name = format!("{env}-deployer-local-s3-events");
    let (s3_event_queue_url, queue_arn) = emulator.create_queue(&queue_name).await?;
    let mut queue_configs = Vec::new();
    for notification in template.s3_notifications("ArtifactBucket")? {
        let mut rules = Vec::new();
        if let Some(prefix) = &notification.prefix {
            rules.push(
                aws_sdk_s3::types::FilterRule::builder()
                    .name(aws_sdk_s3::types::FilterRuleName::Prefix)
                    .value(prefix)
                    .build(),
            );
        }
        if let Some(suffix) = &notification.suffix {
            rules.push(
                aws_sdk_s3::types::FilterRule::builder()
                    .name(aws_sdk_s3::types::FilterRuleName::Suffix)
                    .value(suffix)
                    .build(),
            );
        }
        queue_configs.push(
            aws_sdk_s3::types::QueueConfiguration::builder()
                .queue_arn(&queue_arn)
                .events(aws_sdk_s3::types::Event::from(notification.event.as_str()))
                .filter(
                    aws_sdk_s3::types::NotificationConfigurationFilter::builder()
                        .key(
                            aws_sdk_s3::types::S3KeyFilter::builder()
                                .set_filter_rules(Some(rules))
                                .build(),
                        )
                        .build(),
                )
                .build()?,
        );
    }
    s3.put_bucket_notification_configuration()
        .bucket(&bucket)
        .notification_configuration(
            aws_sdk_s3::types::NotificationConfiguration::builder()
                .set_queue_configurations(Some(queue_configs))
                .build(),
        )
        .send()
        .await
        .context("configuring the bucket's notifications")?;

    // The gates function the state machine invokes (started later, under
    // the name the template gives it).
    let gates_name = name_of(template, "GatesFunction", "FunctionName")?;
    template.set("GatesFunction", gates_name.clone());
    template.set(
        "GatesFunction.Arn",
        format!(
            "arn:aws:lambda:{REGION}:{}:function:{gates_name}",
            crate::account::ACCOUNT_ID
        ),
    );

    // State machine, with the template's definition substitutions.
    let props = template.resource("DeploymentStateMachine")?.clone();
    let mut definition =
        std::fs::read_to_string(options.root.join("state-machine/deployment.asl.json"))
            .context("reading state-machine/deployment.asl.json")?;
    if let Some(substitutions) = props
        .get("DefinitionSubstitutions")
        .and_then(Value::as_object)
    {
        for (name, value) in substitutions {
            definition = definition.replace(&format!("${{{name}}}"), &template.resolve(value));
        }
    }
    let state_machine_name =
        template.resolve(props.get("StateMachineName").context("StateMachineName")?);
    let sfn = aws_sdk_sfn::Client::new(sdk);
    let created = sfn
        .create_state_machine()
        .name(&state_machine_name)
        .definition(definition)
        .role_arn(template.resolve(props.get("RoleArn").context("RoleArn")?))
        .r#type(aws_sdk_sfn::types::StateMachineType::Standard)
        .send()
        .await
        .context("creating the deployment state machine")?;
    let state_machine_arn = created.state_machine_arn().to_owned();
    template.set("DeploymentStateMachine", state_machine_arn.clone());

    // ci-dispatch: its table, and its EventBridge rules delivered through a
    // local queue (moto matches the patterns; it cannot invoke the function).
    let dispatch_table = name_of(template, "DispatchTable", "TableName")?;
    dynamodb
        .create_table()
        .table_name(&dispatch_table)
        .attribute_definitions(string_key("id")?)
        .key_schema(key("id", KeyType::Hash)?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .with_context(|| format!("creating table {dispatch_table}"))?;
    template.set("DispatchTable", dispatch_table.clone());
    let service_deployments_table = name_of(template, "ServiceDeploymentsTable", "TableName")?;
    dynamodb
        .create_table()
        .table_name(&service_deployments_table)
        .attribute_definitions(string_key("pk")?)
        .attribute_definitions(string_key("sk")?)
        .attribute_definitions(string_key("env")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .global_secondary_indexes(ledger_index("env")?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .with_context(|| format!("creating table {service_deployments_table}"))?;
    template.set("ServiceDeploymentsTable", service_deployments_table.clone());
    template.set(
        "ServiceDeploymentsTable.Arn",
        format!(
            "arn:aws:dynamodb:{REGION}:{}:table/{service_deployments_table}",
            crate::account::ACCOUNT_ID
        ),
    );
    let events_queue = format!("{env}-deployer-local-events");
    let (events_queue_url, events_queue_arn) = emulator.create_queue(&events_queue).await?;
    for (name, pattern) in template.rules_targeting("CiDispatchFunction") {
        emulator
            .json_call(
                "events",
                "AWSEvents.PutRule",
                json!({"Name": name, "EventPattern": pattern.to_string(), "State": "ENABLED"}),
            )
            .await
            .with_context(|| format!("creating rule {name}"))?;
        emulator
            .json_call(
                "events",
                "AWSEvents.PutTargets",
                json!({"Rule": name, "Targets": [{"Id": "local-delivery", "Arn": events_queue_arn}]}),
            )
            .await
            .with_context(|| format!("targeting rule {name}"))?;
    }

    Ok(Resources {
        env,
        bucket,
        builds_table,
        stacks_table,
        stream_arn,
        state_machine_arn,
        approval_topic_arn,
        s3_event_queue_url,
        dispatch_table,
        service_deployments_table,
        events_queue_url,
    })
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)? + from;
    Some(&text[from..to])
}

/// A string attribute of a table's key.
fn string_key(name: &str) -> Result<AttributeDefinition, aws_sdk_dynamodb::error::BuildError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
}

/// The `ledger` index the template gives each deployment table: `hash`,
/// then the table's `sk`, every attribute projected.
fn ledger_index(hash: &str) -> anyhow::Result<GlobalSecondaryIndex> {
    Ok(GlobalSecondaryIndex::builder()
        .index_name("ledger")
        .key_schema(key(hash, KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()?)
}

/// One element of a table's key schema.
fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, aws_sdk_dynamodb::error::BuildError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
}
