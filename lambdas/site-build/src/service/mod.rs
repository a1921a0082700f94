//! The site-build function: the doors of [`crate::trigger`] joined to the
//! build, the publisher and the records.
//!
//! One Lambda function is reached four ways (see docs/site-build.md): its
//! Function URL (GitHub webhooks and approval links), SES inbound mail, a
//! direct invocation, and its own asynchronous invocation running a queued
//! deployment. [`SiteService::handle`] tells them apart by shape.

mod email;
mod http;
mod run;
mod secured;
mod sweep;

use std::time::Duration;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use ledger::now_rfc3339;
use notify::{Notice, Outcome};
use serde_json::{json, Value};
use sitedao::{
    now_epoch, Changes, DedupeKey, Deployment, DeploymentAction, DeploymentKey, DeploymentStatus,
    DeploymentStore, NewDeployment, PublishTarget, StatusChange, StoreError,
};
use svix_ksuid::KsuidLike;
use tokio::sync::OnceCell;
use tracing::{info, warn};

use crate::approval::ApprovalToken;
use crate::builder::RemoteBuilder;
use crate::config::SiteConfig;
use crate::lease::Invocation;
use crate::live_store::LiveStore;
use crate::publish::Publisher;
use crate::trigger::{direct, BuildRequest, Command, Environment, GitHubEvent, Origin};
use secured::Secured;

/// Everything the function needs: the AWS clients built once per cold
/// start, the secrets read by the first invocation that needs them.
pub struct SiteService {
    pub config: SiteConfig,
    pub store: DeploymentStore,
    pub publisher: Publisher,
    /// The builder function, where repository code runs.
    pub builder: RemoteBuilder,
    /// Where the secrets are read from, on first use ([`Secured`]).
    ssm: aws_sdk_ssm::Client,
    secured: OnceCell<Secured>,
    /// The CloudFront router's copy of the live pointers (AWS only).
    pub live_store: Option<LiveStore>,
    pub lambda: aws_sdk_lambda::Client,
    pub s3: aws_sdk_s3::Client,
    pub ses: aws_sdk_sesv2::Client,
    /// This function's name, for invoking itself.
    pub function_name: String,
    approval_base: OnceCell<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not start deployment {key}: Lambda Invoke of {function} failed: {message}")]
    Start {
        key: DeploymentKey,
        function: String,
        message: String,
    },
    #[error("deployment {0} does not exist")]
    NotFound(DeploymentKey),
    #[error("{0}")]
    BadRequest(String),
    #[error("cannot find this function's URL for approval links: {0}")]
    FunctionUrl(String),
    #[error("reading the email s3://{bucket}/{key}: {message}")]
    Email {
        bucket: String,
        key: String,
        message: String,
    },
    #[error(transparent)]
    Publish(#[from] crate::PublishError),
    #[error(transparent)]
    LiveStore(#[from] crate::live_store::LiveStoreError),
    #[error("cannot read site-build's secrets: {0}")]
    Secrets(String),
}

/// What became of a request to deploy.
#[derive(Debug)]
pub enum Enqueued {
    /// Recorded and handed to an asynchronous run.
    Queued(Deployment),
    /// Recorded; waits for an approval (the link went to the approvers).
    AwaitingApproval(Deployment),
    /// The same delivery was seen before: this is what it recorded.
    Duplicate(Option<Deployment>),
}

impl SiteService {
    /// Makes the AWS clients; the secrets and what needs them are made by
    /// the first invocation that needs them (`secured`).
    pub fn new(
        config: SiteConfig,
        store: DeploymentStore,
        sdk: &aws_config::SdkConfig,
        function_name: String,
    ) -> Self {
        let live_store = config
            .live_store_arn
            .as_ref()
            .map(|arn| LiveStore::new(aws_sdk_cloudfrontkeyvaluestore::Client::new(sdk), arn));
        let lambda = aws_sdk_lambda::Client::new(sdk);
        // One client per service: the SDK sets a connector up (and parses
        // the TLS roots) for every client built.
        let s3 = aws_sdk_s3::Client::new(sdk);
        let publisher = Publisher::new(s3.clone(), &config.bucket);
        let builder = RemoteBuilder::new(
            lambda.clone(),
            s3.clone(),
            &config.bucket,
            &config.builder_function,
        );
        Self {
            config,
            store,
            publisher,
            builder,
            ssm: aws_sdk_ssm::Client::new(sdk),
            secured: OnceCell::new(),
            live_store,
            lambda,
            s3,
            ses: aws_sdk_sesv2::Client::new(sdk),
            function_name,
            approval_base: OnceCell::new(),
        }
    }

    /// One invocation, whichever door it came through.
    pub async fn handle(
        &self,
        event: Value,
        invocation: &Invocation,
    ) -> Result<Value, ServiceError> {
        if event.pointer("/requestContext/http").is_some() {
            return Ok(self.http(&event).await);
        }
        if event
            .pointer("/Records/0/eventSource")
            .and_then(Value::as_str)
            == Some("aws:ses")
        {
            return self.email(&event).await;
        }
        if let Some(run) = event.get("run") {
            let key: DeploymentKey = serde_json::from_value(run.clone()).map_err(|e| {
                ServiceError::BadRequest(format!("\"run\" needs target and id: {e}"))
            })?;
            let deployment = self.run(&key, invocation).await?;
            return Ok(json!(deployment.summary()));
        }
        if let Some(rollback) = event.get("rollback") {
            return self.rollback(rollback).await;
        }
        if let Some(request) = event.get("deploys") {
            return self.deploys(request).await;
        }
        if sweep::is_sweep(&event) {
            return Ok(self.sweep().await?.to_json());
        }
        self.direct(&event, invocation).await
    }

    /// A direct invocation: the build runs in this invocation and its
    /// result is the answer.
    async fn direct(&self, event: &Value, invocation: &Invocation) -> Result<Value, ServiceError> {
        let request = match direct::parse_direct(event) {
            Ok(request) => request,
            Err(e) => {
                warn!(error = %e, "direct invocation refused");
                return Ok(json!({"status": "REJECTED", "error": e.to_string()}));
            }
        };
        if !request.repository().same_as(&self.config.repository) {
            let error = format!(
                "this install publishes {}, not {}",
                self.config.repository,
                request.repository()
            );
            return Ok(json!({"status": "REJECTED", "error": error}));
        }
        let deployment = match self.record(&request, None).await? {
            Enqueued::Duplicate(Some(existing)) => {
                info!(deployment = %existing.key(), "this session already asked for this; answering with its deployment");
                existing
            }
            Enqueued::Duplicate(None) => {
                return Ok(
                    json!({"status": "DUPLICATE", "error": "this session id was used before"}),
                )
            }
            Enqueued::AwaitingApproval(deployment) => {
                let mut answer = json!(deployment.summary());
                answer["message"] = json!(
                    "production deploys need an approval: the approval link went to Slack; nothing was deployed"
                );
                return Ok(answer);
            }
            Enqueued::Queued(deployment) => {
                self.sweep_quietly().await;
                self.run(&deployment.key(), invocation).await?
            }
        };
        Ok(json!(deployment.summary()))
    }

    /// Records a build request (QUEUED, or AWAITING_APPROVAL for a
    /// production deploy that needs one) and claims its delivery, in one
    /// transaction. Nothing is started here.
    async fn record(
        &self,
        request: &BuildRequest,
        reply_to: Option<String>,
    ) -> Result<Enqueued, ServiceError> {
        let target = request.target();
        let mut deployment = self.new_deployment(
            &target,
            request.environment(),
            DeploymentAction::Build,
            request.branch().as_str(),
            request.origin(),
            request.triggered_by(),
        );
        deployment.commit = request.commit().map(|c| c.as_str().to_owned());
        deployment.reply_to = reply_to;
        let token = if request.needs_approval(&self.config.production_branch) {
            let token =
                ApprovalToken::generate().map_err(|e| ServiceError::BadRequest(e.to_string()))?;
            deployment.status = DeploymentStatus::AwaitingApproval;
            deployment.approval_token_hash = Some(token.hash());
            deployment.approval_expires_at =
                Some(now_epoch() + self.config.approval_ttl.as_secs() as i64);
            Some(token)
        } else {
            None
        };
        let claim = request.dedupe_key();
        if !self.store.create(&deployment, claim.as_ref()).await? {
            return Ok(Enqueued::Duplicate(self.claimed(claim.as_ref()).await?));
        }
        info!(deployment = %deployment.key(), status = %deployment.status, branch = %deployment.branch, "deployment recorded");
        match token {
            Some(token) => {
                self.ask_for_approval(&deployment, &token).await;
                Ok(Enqueued::AwaitingApproval(deployment))
            }
            None => Ok(Enqueued::Queued(deployment)),
        }
    }

    async fn claimed(&self, claim: Option<&DedupeKey>) -> Result<Option<Deployment>, ServiceError> {
        let Some(claim) = claim else { return Ok(None) };
        match self.store.claimed_deployment(claim).await? {
            Some(key) => Ok(self.store.get(&key).await?),
            None => Ok(None),
        }
    }

    /// Records and starts (asynchronously) a build or a preview removal;
    /// used by the webhook and by mail.
    pub async fn enqueue(
        &self,
        command: &Command,
        reply_to: Option<String>,
    ) -> Result<Option<Enqueued>, ServiceError> {
        let enqueued = match command {
            Command::Build(request) => self.record(request, reply_to).await?,
            Command::RemovePreview { branch, origin, .. } => {
                let target = PublishTarget::preview(branch.as_str());
                let deployment = self.new_deployment(
                    &target,
                    Environment::Preview,
                    DeploymentAction::Remove,
                    branch.as_str(),
                    origin,
                    "github",
                );
                let claim = command.dedupe_key();
                if self.store.create(&deployment, claim.as_ref()).await? {
                    Enqueued::Queued(deployment)
                } else {
                    Enqueued::Duplicate(self.claimed(claim.as_ref()).await?)
                }
            }
            _ => return Ok(None),
        };
        if let Enqueued::Queued(deployment) = &enqueued {
            self.start(deployment, command.dedupe_key().as_ref())
                .await?;
            self.sweep_quietly().await;
        }
        Ok(Some(enqueued))
    }

    /// Invokes this function asynchronously to run a queued deployment. If
    /// that fails, the record is marked FAILED and the delivery's claim is
    /// given back, so a redelivery can try again: nothing is left queued
    /// forever and nothing is lost.
    async fn start(
        &self,
        deployment: &Deployment,
        claim: Option<&DedupeKey>,
    ) -> Result<(), ServiceError> {
        let key = deployment.key();
        let Err(message) = self.invoke_run(&key).await else {
            info!(deployment = %key, "build started asynchronously");
            return Ok(());
        };
        warn!(deployment = %key, error = %message, "could not start the build");
        let error = format!("could not start the build: {message}");
        self.store
            .transition(
                &key,
                DeploymentStatus::Queued,
                DeploymentStatus::Failed,
                Changes::default()
                    .set("error", &error)
                    .set("finished_at", now_rfc3339()),
                None,
            )
            .await?;
        if let Some(claim) = claim {
            self.store.release(claim).await?;
        }
        Err(ServiceError::Start {
            key,
            function: self.function_name.clone(),
            message,
        })
    }

    /// Invokes this function asynchronously with `{"run": key}`.
    async fn invoke_run(&self, key: &DeploymentKey) -> Result<(), String> {
        let payload = json!({"run": key}).to_string();
        self.lambda
            .invoke()
            .function_name(&self.function_name)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_sdk_lambda::error::DisplayErrorContext(&e).to_string())
    }

    fn new_deployment(
        &self,
        target: &PublishTarget,
        environment: Environment,
        action: DeploymentAction,
        branch: &str,
        origin: &Origin,
        triggered_by: &str,
    ) -> Deployment {
        let expires_at = matches!(target, PublishTarget::Preview { .. })
            .then(|| now_epoch() + self.config.preview_ttl.as_secs() as i64);
        Deployment::queued(NewDeployment {
            key: DeploymentKey {
                target: target.name(),
                // Millisecond-precise, so deployments recorded in one second still
                // sort in the order they came (the newer one wins a race).
                id: svix_ksuid::KsuidMs::now(None).to_string(),
            },
            site: self.config.repository.to_string(),
            environment: environment.as_str().to_owned(),
            action,
            branch: branch.to_owned(),
            url: self.config.url_of(target),
            triggered_by: triggered_by.to_owned(),
            origin: origin_name(origin),
            created_at: now_rfc3339(),
            expires_at,
        })
    }

    /// Where approval links point: the configured base, or this function's
    /// own URL (looked up once; it cannot be passed in without a cycle).
    async fn approval_base(&self) -> Result<&str, ServiceError> {
        self.approval_base
            .get_or_try_init(|| async {
                if let Some(base) = &self.config.approval_base_url {
                    return Ok(base.clone());
                }
                let out = self
                    .lambda
                    .get_function_url_config()
                    .function_name(&self.function_name)
                    .send()
                    .await
                    .map_err(|e| {
                        ServiceError::FunctionUrl(
                            aws_sdk_lambda::error::DisplayErrorContext(&e).to_string(),
                        )
                    })?;
                Ok(out.function_url.trim_end_matches('/').to_owned())
            })
            .await
            .map(String::as_str)
    }

    async fn ask_for_approval(&self, deployment: &Deployment, token: &ApprovalToken) {
        let link = match self.approval_base().await {
            Ok(base) => approval_link(base, &deployment.key(), token.reveal()),
            Err(e) => {
                warn!(deployment = %deployment.key(), error = %e, "no approval link can be made; approve with the deployer CLI");
                return;
            }
        };
        let notice = Notice::new(
            Outcome::Info,
            format!(
                "Production deploy of {} ({}) needs an approval",
                deployment.site, deployment.branch
            ),
            &deployment.environment,
        )
        .with_deployment_id(&deployment.id)
        .with_reason(format!(
            "Requested by {} via {}. The link works once and expires in {}.",
            deployment.triggered_by,
            deployment.origin,
            describe_duration(self.config.approval_ttl)
        ))
        .with_link("Review and approve", link);
        self.notify(&notice).await;
    }

    async fn notify(&self, notice: &Notice) {
        let notifier = match self.secured().await {
            Ok(secured) => &secured.notifier,
            Err(e) => {
                warn!(error = %e, "a notification could not be delivered");
                return;
            }
        };
        let delivery = notifier.send(notice).await;
        if delivery.failed > 0 {
            warn!(
                failed = delivery.failed,
                "a notification could not be delivered"
            );
        }
    }

    /// Puts a target's previous deploy, or the kept deploy `to`, back live
    /// (`deployer site rollback [--to DEPLOY_ID]`).
    async fn rollback(&self, request: &Value) -> Result<Value, ServiceError> {
        if let Some(field) = request.as_object().and_then(|o| {
            o.keys()
                .find(|k| !["environment", "branch", "to", "triggered_by"].contains(&k.as_str()))
        }) {
            return Err(ServiceError::BadRequest(format!(
                "field {field:?} is not part of a rollback (expected environment, branch, to, triggered_by)"
            )));
        }
        let to = match request.get("to") {
            None | Some(Value::Null) => None,
            Some(Value::String(to)) => Some(to.as_str()),
            Some(_) => {
                return Err(ServiceError::BadRequest(
                    "\"to\" must be a deploy id (a string)".into(),
                ))
            }
        };
        let (environment, target) = requested_target(request)?;
        let by = request
            .get("triggered_by")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        let outcome = self.publisher.rollback_to(&target, to).await?;
        if let Some(store) = &self.live_store {
            store.sync(&self.publisher, &target).await?;
        }
        info!(target = %target, from = %outcome.rolled_back_from, to = %outcome.deploy_id, by, "rolled back");
        self.record_rollback(
            &target,
            environment,
            &outcome.rolled_back_from,
            &outcome.deploy_id,
            by,
        )
        .await?;
        let notice = Notice::new(
            Outcome::Info,
            format!("{} rolled back to deploy {}", target, outcome.deploy_id),
            environment.as_str(),
        )
        .with_reason(format!("by {by}; was {}", outcome.rolled_back_from))
        .with_link("Open", self.config.url_of(&target));
        self.notify(&notice).await;
        Ok(json!({
            "target": target.name(),
            "deploy_id": outcome.deploy_id,
            "rolled_back_from": outcome.rolled_back_from,
            "url": self.config.url_of(&target),
        }))
    }

    /// The rollback's deployment record: PUBLISHED, with the branch and
    /// commit of the deployment that first published the deploy now live.
    async fn record_rollback(
        &self,
        target: &PublishTarget,
        environment: Environment,
        from: &str,
        to: &str,
        by: &str,
    ) -> Result<(), ServiceError> {
        let published = self
            .store
            .list(&target.name(), ROLLBACK_LOOKED_AT)
            .await?
            .into_iter()
            .find(|d| d.deploy_id.as_deref() == Some(to) && d.action == DeploymentAction::Build);
        let branch = published.as_ref().map_or("", |d| d.branch.as_str());
        let mut record = self.new_deployment(
            target,
            environment,
            DeploymentAction::Rollback,
            branch,
            &Origin::Direct { session_id: None },
            by,
        );
        let now = now_rfc3339();
        record.origin = "rollback".into();
        record.commit = published.and_then(|d| d.commit);
        record.status = DeploymentStatus::Published;
        record.deploy_id = Some(to.to_owned());
        record.finished_at = Some(now.clone());
        record.updated_at = now.clone();
        record.transitions.push(StatusChange {
            status: DeploymentStatus::Published,
            at: now,
            reason: format!("rolled back from deploy {from} to {to} by {by}"),
        });
        self.store.create(&record, None).await?;
        Ok(())
    }

    /// What rollback can reach in a target (`deployer site list`):
    /// `{"deploys": {"environment", "branch"?}}`.
    async fn deploys(&self, request: &Value) -> Result<Value, ServiceError> {
        let (_, target) = requested_target(request)?;
        let reachable = match self.publisher.reachable(&target).await {
            Ok(reachable) => reachable,
            Err(crate::PublishError::NotLive { .. }) => {
                return Ok(json!({
                    "target": target.name(),
                    "live": null,
                    "previous": null,
                    "reachable": [],
                    "keep": self.config.keep_deploys,
                }))
            }
            Err(e) => return Err(e.into()),
        };
        Ok(json!({
            "target": target.name(),
            "live": reachable.live,
            "previous": reachable.previous,
            "reachable": reachable.kept,
            "keep": self.config.keep_deploys,
        }))
    }
}

/// The target a rollback or a deploys request names: `environment`
/// (default production) and, for a preview, `branch`.
fn requested_target(request: &Value) -> Result<(Environment, PublishTarget), ServiceError> {
    let environment: Environment = request
        .get("environment")
        .and_then(Value::as_str)
        .unwrap_or("production")
        .parse()
        .map_err(|e: crate::trigger::UnknownEnvironment| ServiceError::BadRequest(e.to_string()))?;
    let target = match environment {
        Environment::Production => PublishTarget::Production,
        Environment::Staging => PublishTarget::Staging,
        Environment::Preview => {
            let branch = request
                .get("branch")
                .and_then(Value::as_str)
                .ok_or_else(|| ServiceError::BadRequest("a preview needs \"branch\"".into()))?;
            PublishTarget::preview(branch)
        }
    };
    Ok((environment, target))
}

/// How far back a rollback looks for the deployment that published the
/// deploy it puts back (kept deploys are fewer than this).
const ROLLBACK_LOOKED_AT: i32 = 200;

/// The origin a push records (the head check in `run` looks for it).
const PUSH_ORIGIN: &str = "github:push";

fn origin_name(origin: &Origin) -> String {
    match origin {
        Origin::GitHub {
            event: GitHubEvent::Push { .. },
            ..
        } => PUSH_ORIGIN.into(),
        Origin::GitHub {
            event: GitHubEvent::PullRequest { number, .. },
            ..
        } => format!("github:pull_request#{number}"),
        Origin::Email { .. } => "email".into(),
        Origin::Direct { .. } => "direct".into(),
    }
}

pub fn approval_link(base: &str, key: &DeploymentKey, token: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("target", &key.target)
        .append_pair("id", &key.id)
        .append_pair("token", token)
        .finish();
    format!("{base}/approve?{query}")
}

fn describe_duration(duration: Duration) -> String {
    let hours = duration.as_secs() / 3600;
    if hours >= 1 {
        format!("{hours} h")
    } else {
        format!("{} min", duration.as_secs().div_ceil(60))
    }
}
