//! SES inbound mail: the receipt rule stores the message in the bucket,
//! then invokes this function with the verdicts. Rejected mail is logged
//! and never answered (answering would confirm the mailbox to spammers);
//! accepted commands get a reply when a reply address is configured.

use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use serde_json::{json, Value};
use tracing::{info, warn};

use super::{Enqueued, ServiceError, SiteService};
use crate::trigger::email::{self, EmailPolicy};
use crate::trigger::Command;

impl SiteService {
    pub(super) async fn email(&self, event: &Value) -> Result<Value, ServiceError> {
        let records = match email::records(event) {
            Ok(records) => records,
            Err(e) => {
                warn!(error = %e, "email ignored");
                return Ok(json!({"accepted": 0}));
            }
        };
        let policy = EmailPolicy {
            allowed_senders: self.config.email_senders.clone(),
            repository: self.config.repository.clone(),
            default_branch: self.config.production_branch.clone(),
        };
        let mut accepted = 0;
        for record in records {
            let message_id = record
                .pointer("/ses/mail/messageId")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let body = if message_id.is_empty() || message_id.contains(['/', '.']) {
                String::new()
            } else {
                self.email_body(message_id).await?
            };
            let command = match email::parse_email(record, &body, &policy) {
                Ok(command) => command,
                Err(rejection) => {
                    warn!(message_id, reason = %rejection, "email ignored");
                    continue;
                }
            };
            let sender = match &command {
                Command::Build(request) => match request.origin() {
                    crate::trigger::Origin::Email { sender, .. } => Some(sender.clone()),
                    _ => None,
                },
                Command::ShowPreview {
                    origin: crate::trigger::Origin::Email { sender, .. },
                    ..
                } => Some(sender.clone()),
                _ => None,
            };
            accepted += 1;
            self.email_command(&command, sender).await?;
        }
        Ok(json!({"accepted": accepted}))
    }

    async fn email_command(
        &self,
        command: &Command,
        sender: Option<String>,
    ) -> Result<(), ServiceError> {
        match command {
            Command::Build(request) => {
                let what = format!("deploy {} ({})", request.environment(), request.branch());
                let (subject, text) = match self.enqueue(command, sender.clone()).await? {
                    Some(Enqueued::Queued(d)) => (
                        format!("[deployer] {what}: queued"),
                        format!(
                            "Building {} for {}. You will get another mail when it is live at {}.\n\nDeployment {}.",
                            d.branch, d.environment, d.url, d.id
                        ),
                    ),
                    Some(Enqueued::AwaitingApproval(d)) => (
                        format!("[deployer] {what}: refused until approved"),
                        format!(
                            "Production deploys need an approval, and an email is not one. Nothing was deployed.\n\n\
                             Deployment {} is waiting: an approver has been sent a single-use link (Slack), \
                             valid for {}. When it is approved, the build starts and you get a mail.",
                            d.id,
                            super::describe_duration(self.config.approval_ttl)
                        ),
                    ),
                    Some(Enqueued::Duplicate(_)) | None => {
                        info!("this message was handled before; no reply");
                        return Ok(());
                    }
                };
                if let Some(to) = &sender {
                    self.reply(to, &subject, &text).await;
                }
            }
            Command::ShowPreview { branch, .. } => {
                if let Some(claim) = command.dedupe_key() {
                    if !self.store.claim(&claim).await? {
                        info!("this message was handled before; no reply");
                        return Ok(());
                    }
                }
                let branch = branch
                    .clone()
                    .unwrap_or_else(|| self.config.production_branch.clone());
                let target = sitedao::PublishTarget::preview(branch.as_str());
                let text = match self.publisher.live(&target).await? {
                    Some(live) => format!(
                        "The preview of {branch} is live at {} (deploy {}).",
                        self.config.url_of(&target),
                        live.deploy_id
                    ),
                    None => format!("No preview of {branch} is live."),
                };
                if let Some(to) = &sender {
                    self.reply(to, &format!("[deployer] preview of {branch}"), &text)
                        .await;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The plain-text body of a stored message (the first text part, or
    /// the HTML part as text when there is no plain one).
    async fn email_body(&self, message_id: &str) -> Result<String, ServiceError> {
        let key = format!("{}{message_id}", self.config.email_prefix);
        let failed = |message: String| ServiceError::Email {
            bucket: self.config.bucket.clone(),
            key: key.clone(),
            message,
        };
        let object = self
            .s3
            .get_object()
            .bucket(&self.config.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| failed(aws_sdk_s3::error::DisplayErrorContext(&e).to_string()))?;
        let raw = object
            .body
            .collect()
            .await
            .map_err(|e| failed(e.to_string()))?
            .into_bytes();
        let message = mail_parser::MessageParser::default()
            .parse(raw.as_ref())
            .ok_or_else(|| failed("not a MIME message".into()))?;
        Ok(message
            .body_text(0)
            .map(|text| text.into_owned())
            .unwrap_or_default())
    }

    /// Sends a plain-text mail from the configured address; a failure is
    /// logged (the deployment itself is recorded either way).
    pub(super) async fn reply(&self, to: &str, subject: &str, text: &str) {
        let Some(from) = &self.config.email_reply_from else {
            return;
        };
        let content = |data: &str| {
            Content::builder()
                .data(data)
                .charset("UTF-8")
                .build()
                .expect("data is set")
        };
        let result = self
            .ses
            .send_email()
            .from_email_address(from)
            .destination(Destination::builder().to_addresses(to).build())
            .content(
                EmailContent::builder()
                    .simple(
                        Message::builder()
                            .subject(content(subject))
                            .body(Body::builder().text(content(text)).build())
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await;
        match result {
            Ok(_) => info!(to, subject, "reply sent"),
            Err(e) => warn!(
                to,
                error = %aws_sdk_sesv2::error::DisplayErrorContext(&e),
                "could not send the reply"
            ),
        }
    }
}
