//! Email commands through SES inbound.
//!
//! The SES receipt rule stores the message in S3 and invokes the function
//! with the record below; the handler reads the message, extracts its
//! plain-text body and passes both here.
//!
//! A message is accepted only when SES's SPF, DKIM, spam, virus and DMARC
//! verdicts are all `PASS`, a DKIM signature is aligned with the From
//! domain (checked on the message's headers when SES passes them whole),
//! and both the envelope sender and the From address are configured
//! senders. Every
//! `Err` is therefore mail this function must not answer: replying to a
//! forged or unlisted sender would be backscatter. Every `Ok`, including
//! [`Command::Ignored`], comes from an accepted sender and may be answered.
//!
//! The command is the first non-empty line of the body that is not quoted
//! (`>`) and comes before any reply marker (`On … wrote:`,
//! `-----Original Message-----`, `From:`, a signature's `--`); the subject
//! is read only when that line is not a command. Commands are whole lines,
//! case-insensitive:
//!
//! ```text
//! deploy staging [branch]       staging, from the mailbox's default branch unless named
//! deploy production [branch]    production (always waits for an approval)
//! show preview [branch]         where a branch's preview is; every preview without one
//! ```

use serde::Deserialize;
use serde_json::Value;

use super::{Branch, BuildRequest, Command, Environment, NameError, Origin, Repository};

/// The `eventSource` of an SES record.
const SES_EVENT_SOURCE: &str = "aws:ses";

/// An email address is at most 254 characters; a longer value is shown cut.
const SHOWN_ADDRESS: usize = 254;

/// What this mailbox acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailPolicy {
    /// Addresses allowed to give commands, compared whole and ignoring case.
    /// Empty allows nobody.
    pub allowed_senders: Vec<String>,
    /// The site this mailbox deploys.
    pub repository: Repository,
    /// Built when a deploy command names no branch.
    pub default_branch: Branch,
}

impl EmailPolicy {
    /// `address` is already in lowercase.
    fn allows(&self, address: &str) -> bool {
        self.allowed_senders
            .iter()
            .any(|allowed| allowed.trim().to_lowercase() == address)
    }
}

/// One of the checks SES runs on an incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Spf,
    Dkim,
    Spam,
    Virus,
    Dmarc,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Spf => "SPF",
            Verdict::Dkim => "DKIM",
            Verdict::Spam => "spam",
            Verdict::Virus => "virus",
            Verdict::Dmarc => "DMARC",
        })
    }
}

/// Why a message was not accepted. None of these may be answered by mail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailRejection {
    #[error("the Lambda event has no Records array; is this an SES invocation?")]
    NoRecords,
    #[error("the record's eventSource is {found:?}, not \"aws:ses\"")]
    NotSes { found: String },
    #[error("the SES record is malformed: {reason}")]
    MalformedRecord { reason: String },
    #[error("SES gave no {verdict} verdict (is scanning enabled on the receipt rule?)")]
    MissingVerdict { verdict: Verdict },
    #[error("SES {verdict} verdict is {status}, not PASS")]
    VerdictFailed { verdict: Verdict, status: String },
    #[error("the message has no From address")]
    NoFromAddress,
    #[error("the message has {count} From addresses; a command needs exactly one sender")]
    SeveralFromAddresses { count: usize },
    #[error("envelope sender {address:?} is not an allowed sender")]
    EnvelopeSenderNotAllowed { address: String },
    #[error("From address {address:?} is not an allowed sender")]
    FromNotAllowed { address: String },
    #[error("no DKIM signature is aligned with the From domain {from_domain:?} (signed by {})", if signers.is_empty() { "nobody".to_owned() } else { signers.join(", ") })]
    DkimNotAligned {
        from_domain: String,
        signers: Vec<String>,
    },
}

/// The records of an SES Lambda event (SES sends one per invocation).
pub fn records(event: &Value) -> Result<&[Value], EmailRejection> {
    event
        .get("Records")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .ok_or(EmailRejection::NoRecords)
}

/// Reads the command from one SES record and the message's plain-text body.
pub fn parse_email(
    event_record: &Value,
    body: &str,
    policy: &EmailPolicy,
) -> Result<Command, EmailRejection> {
    let event_source = event_record.get("eventSource").and_then(Value::as_str);
    if event_source != Some(SES_EVENT_SOURCE) {
        return Err(EmailRejection::NotSes {
            found: event_source.unwrap_or("<none>").chars().take(40).collect(),
        });
    }
    let record =
        SesRecord::deserialize(event_record).map_err(|e| EmailRejection::MalformedRecord {
            reason: e.to_string(),
        })?;
    let Ses { mail, receipt } = record.ses;

    receipt.check()?;

    let from = match mail.common_headers.from.as_slice() {
        [] => return Err(EmailRejection::NoFromAddress),
        [one] => mailbox_address(one),
        several => {
            return Err(EmailRejection::SeveralFromAddresses {
                count: several.len(),
            })
        }
    };
    if from.is_empty() {
        return Err(EmailRejection::NoFromAddress);
    }
    let envelope = envelope_address(&mail.source);
    if !policy.allows(&envelope) {
        return Err(EmailRejection::EnvelopeSenderNotAllowed {
            address: shown_address(&envelope),
        });
    }
    if !policy.allows(&from) {
        return Err(EmailRejection::FromNotAllowed {
            address: shown_address(&from),
        });
    }
    mail.check_dkim_alignment(&from)?;

    let origin = Origin::Email {
        message_id: mail.message_id,
        sender: from.clone(),
    };
    let found = command_line(body).and_then(read_command).or_else(|| {
        mail.common_headers
            .subject
            .as_deref()
            .and_then(|subject| read_command(clean(subject)))
    });
    let (verb, branch) = match found {
        None => {
            return Ok(Command::Ignored {
                reason: "no command: the first line of the message (or its subject) must be \
                         \"deploy staging [branch]\", \"deploy production [branch]\" or \
                         \"show preview [branch]\""
                    .to_owned(),
            })
        }
        Some(Err(invalid)) => {
            return Ok(Command::Ignored {
                reason: format!("the command names no usable branch: {invalid}"),
            })
        }
        Some(Ok(command)) => command,
    };
    let deploy = |environment| {
        Command::Build(BuildRequest::new(
            policy.repository.clone(),
            branch
                .clone()
                .unwrap_or_else(|| policy.default_branch.clone()),
            None,
            environment,
            from.clone(),
            origin.clone(),
        ))
    };
    Ok(match verb {
        Verb::DeployStaging => deploy(Environment::Staging),
        Verb::DeployProduction => deploy(Environment::Production),
        Verb::ShowPreview => Command::ShowPreview {
            repository: policy.repository.clone(),
            branch,
            origin,
        },
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesRecord {
    ses: Ses,
}

#[derive(Deserialize)]
struct Ses {
    mail: Mail,
    receipt: Receipt,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mail {
    /// The envelope sender (`MAIL FROM`).
    source: String,
    /// SES's id, also the S3 object key of the stored message.
    message_id: String,
    common_headers: CommonHeaders,
    /// The message's headers as received; absent or cut short when
    /// `headers_truncated`.
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(default)]
    headers_truncated: bool,
}

#[derive(Deserialize)]
struct Header {
    name: String,
    value: String,
}

impl Mail {
    /// DMARC passes on an aligned SPF *or* DKIM result; a command needs its
    /// DKIM signature aligned too: one `DKIM-Signature` whose `d=` is the
    /// From domain, or a parent or child of it (relaxed alignment). SES's
    /// DKIM `PASS` says a signature verified; this says whose. Without the
    /// whole header list (SES truncates very large ones) DMARC's `PASS` is
    /// what proves alignment.
    fn check_dkim_alignment(&self, from: &str) -> Result<(), EmailRejection> {
        if self.headers_truncated || self.headers.is_empty() {
            return Ok(());
        }
        let from_domain = from.rsplit_once('@').map_or("", |(_, domain)| domain);
        let signers: Vec<String> = self
            .headers
            .iter()
            .filter(|header| header.name.eq_ignore_ascii_case("DKIM-Signature"))
            .filter_map(|header| dkim_domain(&header.value))
            .collect();
        let aligned = |signer: &String| {
            !from_domain.is_empty()
                && (signer == from_domain
                    || from_domain.ends_with(&format!(".{signer}"))
                    || signer.ends_with(&format!(".{from_domain}")))
        };
        if signers.iter().any(aligned) {
            return Ok(());
        }
        Err(EmailRejection::DkimNotAligned {
            from_domain: shown_address(from_domain),
            signers: signers.iter().take(5).map(|s| shown_address(s)).collect(),
        })
    }
}

/// The `d=` tag of a `DKIM-Signature` header, in lowercase.
fn dkim_domain(value: &str) -> Option<String> {
    value.split(';').find_map(|tag| {
        let (name, domain) = tag.split_once('=')?;
        let domain: String = domain.split_whitespace().collect();
        (name.trim() == "d" && !domain.is_empty())
            .then(|| domain.trim_end_matches('.').to_lowercase())
    })
}

#[derive(Deserialize)]
struct CommonHeaders {
    #[serde(default)]
    from: Vec<String>,
    subject: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Receipt {
    spf_verdict: Option<VerdictStatus>,
    dkim_verdict: Option<VerdictStatus>,
    spam_verdict: Option<VerdictStatus>,
    virus_verdict: Option<VerdictStatus>,
    dmarc_verdict: Option<VerdictStatus>,
}

#[derive(Deserialize)]
struct VerdictStatus {
    status: String,
}

impl Receipt {
    fn check(&self) -> Result<(), EmailRejection> {
        let required = [
            (Verdict::Spf, &self.spf_verdict),
            (Verdict::Dkim, &self.dkim_verdict),
            (Verdict::Spam, &self.spam_verdict),
            (Verdict::Virus, &self.virus_verdict),
            // Not only "not FAIL": GRAY (the From domain publishes no DMARC
            // policy) proves nothing about who sent the message.
            (Verdict::Dmarc, &self.dmarc_verdict),
        ];
        for (verdict, reported) in required {
            let status = &reported
                .as_ref()
                .ok_or(EmailRejection::MissingVerdict { verdict })?
                .status;
            if status != "PASS" {
                return Err(failed(verdict, status));
            }
        }
        Ok(())
    }
}

fn failed(verdict: Verdict, status: &str) -> EmailRejection {
    EmailRejection::VerdictFailed {
        verdict,
        status: status.chars().take(40).collect(),
    }
}

fn shown_address(address: &str) -> String {
    address.chars().take(SHOWN_ADDRESS).collect()
}

/// The address of a From entry (`Ana Lima <ana@example.com>` or a bare
/// address), in lowercase. The last `<…>` is the address: a display name
/// such as `"ana@example.com" <mallory@example.net>` is not.
fn mailbox_address(entry: &str) -> String {
    let entry = entry.trim();
    let address = match (entry.rfind('<'), entry.strip_suffix('>')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        _ => entry,
    };
    address.trim().to_lowercase()
}

/// The envelope sender in lowercase, without a BATV tag
/// (`prvs=1234abcdef=ana@example.com` is `ana@example.com`: some mail
/// servers tag every outgoing envelope so bounces can be verified).
fn envelope_address(source: &str) -> String {
    let address = mailbox_address(source);
    if let Some((local, domain)) = address.rsplit_once('@') {
        if let Some((_tag, user)) = local
            .strip_prefix("prvs=")
            .and_then(|tagged| tagged.split_once('='))
        {
            if !user.is_empty() {
                return format!("{user}@{domain}");
            }
        }
    }
    address
}

/// A line without surrounding whitespace or a byte-order mark.
fn clean(line: &str) -> &str {
    line.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
}

/// The line that may hold the command: the first non-empty unquoted line,
/// unless the quoted part of a reply starts first.
fn command_line(body: &str) -> Option<&str> {
    for line in body.lines().map(clean) {
        if line.is_empty() || line.starts_with('>') {
            continue;
        }
        if is_reply_marker(line) {
            return None;
        }
        return Some(line);
    }
    None
}

/// Where the new text of a message ends and quoted or signature text begins.
fn is_reply_marker(line: &str) -> bool {
    let lower = line.to_lowercase();
    (lower.starts_with("on ") && lower.ends_with("wrote:"))
        || (lower.starts_with("-----") && lower.contains("original message"))
        || lower.starts_with("from:")
        || line == "--"
        || (line.len() >= 8 && line.bytes().all(|b| b == b'_'))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    DeployStaging,
    DeployProduction,
    ShowPreview,
}

/// A whole line read as a command: `None` if it is not one, an error if it
/// is one whose branch cannot be.
fn read_command(line: &str) -> Option<Result<(Verb, Option<Branch>), NameError>> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (first, second, branch) = match words.as_slice() {
        [first, second] => (first, second, None),
        [first, second, branch] => (first, second, Some(branch)),
        _ => return None,
    };
    let verb = match (
        first.to_lowercase().as_str(),
        second.to_lowercase().as_str(),
    ) {
        ("deploy", "staging") => Verb::DeployStaging,
        ("deploy", "production") => Verb::DeployProduction,
        ("show", "preview") => Verb::ShowPreview,
        _ => return None,
    };
    Some(branch.map(|b| b.parse()).transpose().map(|b| (verb, b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sitedao::DedupeKey;

    const EVENT: &str = include_str!("fixtures/ses_inbound.json");
    const MESSAGE_ID: &str = "o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1";

    fn record() -> Value {
        let event: Value = serde_json::from_str(EVENT).unwrap();
        records(&event).unwrap()[0].clone()
    }

    fn with(mut record: Value, pointer: &str, value: Value) -> Value {
        *record
            .pointer_mut(pointer)
            .unwrap_or_else(|| panic!("the fixture has no {pointer}")) = value;
        record
    }

    fn policy() -> EmailPolicy {
        EmailPolicy {
            allowed_senders: vec!["ana@example.com".to_owned(), "Bo@Example.com".to_owned()],
            repository: "acme/site".parse().unwrap(),
            default_branch: "main".parse().unwrap(),
        }
    }

    fn parse(record: &Value, body: &str) -> Result<Command, EmailRejection> {
        parse_email(record, body, &policy())
    }

    fn build(command: Command) -> BuildRequest {
        match command {
            Command::Build(request) => request,
            other => panic!("expected a build, got {other:?}"),
        }
    }

    fn assert_no_command(command: Command) {
        assert!(
            matches!(&command, Command::Ignored { reason } if reason.starts_with("no command")),
            "{command:?}"
        );
    }

    #[test]
    fn deploy_staging_from_an_allowed_sender_builds_the_default_branch() {
        let request = build(parse(&record(), "deploy staging\r\n\r\n-- \r\nAna\r\n").unwrap());
        assert_eq!(request.repository().to_string(), "acme/site");
        assert_eq!(request.branch().as_str(), "main");
        assert_eq!(request.commit(), None);
        assert_eq!(request.environment(), Environment::Staging);
        assert_eq!(request.triggered_by(), "ana@example.com");
        assert_eq!(
            request.origin(),
            &Origin::Email {
                message_id: MESSAGE_ID.to_owned(),
                sender: "ana@example.com".to_owned(),
            }
        );
        assert_eq!(
            request.dedupe_key().as_ref().map(DedupeKey::as_str),
            Some(format!("ses/{MESSAGE_ID}/build-staging").as_str())
        );
        assert!(!request.needs_approval(&"main".parse().unwrap()));
    }

    #[test]
    fn commands_ignore_case_and_surrounding_space_but_keep_the_branch_as_written() {
        let request =
            build(parse(&record(), "\u{feff}  DEPLOY   Staging  feature/Pricing \n").unwrap());
        assert_eq!(request.branch().as_str(), "feature/Pricing");
        assert_eq!(request.environment(), Environment::Staging);
    }

    #[test]
    fn production_by_email_always_needs_approval() {
        let request = build(parse(&record(), "deploy production").unwrap());
        assert_eq!(request.environment(), Environment::Production);
        assert_eq!(request.branch().as_str(), "main");
        assert!(request.needs_approval(&"main".parse().unwrap()));
    }

    #[test]
    fn show_preview_names_the_branch_or_none() {
        let command = parse(&record(), "show preview feature/pricing").unwrap();
        assert_eq!(
            command,
            Command::ShowPreview {
                repository: "acme/site".parse().unwrap(),
                branch: Some("feature/pricing".parse().unwrap()),
                origin: Origin::Email {
                    message_id: MESSAGE_ID.to_owned(),
                    sender: "ana@example.com".to_owned(),
                },
            }
        );
        assert!(matches!(
            parse(&record(), "Show Preview").unwrap(),
            Command::ShowPreview { branch: None, .. }
        ));
    }

    #[test]
    fn a_quoted_deploy_production_yields_to_show_preview_on_the_first_line() {
        let body = "show preview\n\nOn Mon, 2 Mar 2026 at 12:29, Deploy Bot <deploy@sites.acme.example> wrote:\n> deploy production\n";
        assert!(matches!(
            parse(&record(), body).unwrap(),
            Command::ShowPreview { branch: None, .. }
        ));
        // Inline replies: quoted lines above the answer are skipped.
        let inline = "> Which preview?\n> deploy production\nshow preview feature/pricing\n";
        assert!(matches!(
            parse(&record(), inline).unwrap(),
            Command::ShowPreview {
                branch: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn deploy_production_only_in_quoted_text_is_no_command() {
        let quoted_only = "> deploy production\n>\n> -- \n> Deploy Bot\n";
        assert_no_command(parse(&record(), quoted_only).unwrap());

        let after_a_reply_marker = "Looks good to me!\n\nOn Mon, 2 Mar 2026 at 12:29, Deploy Bot wrote:\n> Reply with\n> deploy production\n";
        assert_no_command(parse(&record(), after_a_reply_marker).unwrap());
    }

    #[test]
    fn text_below_a_reply_marker_is_never_read_even_unquoted() {
        for marker in [
            "-----Original Message-----",
            "From: Deploy Bot <deploy@sites.acme.example>",
            "On Mon, 2 Mar 2026, Deploy Bot wrote:",
            "________________________________",
            "-- ",
        ] {
            let body = format!("\n{marker}\n\ndeploy production\n");
            assert_no_command(parse(&record(), &body).unwrap());
        }
    }

    #[test]
    fn a_command_inside_a_sentence_is_not_a_command() {
        for body in [
            "Please deploy production when you can.",
            "Could you deploy staging?",
            "deploy production now please",
            "I would not deploy production today",
            "deploy",
            "deploy prod",
        ] {
            assert_no_command(parse(&record(), body).unwrap());
        }
    }

    #[test]
    fn the_subject_is_read_only_when_the_body_has_no_command() {
        let subject_staging = with(
            record(),
            "/ses/mail/commonHeaders/subject",
            "deploy staging".into(),
        );
        for body in ["", "\n\n", "Sent from my phone", "> deploy production"] {
            let request = build(parse(&subject_staging, body).unwrap());
            assert_eq!(request.environment(), Environment::Staging, "{body:?}");
        }
        let subject_production = with(
            record(),
            "/ses/mail/commonHeaders/subject",
            "deploy production".into(),
        );
        let request = build(parse(&subject_production, "deploy staging").unwrap());
        assert_eq!(request.environment(), Environment::Staging);

        // A reply's subject is not a command.
        let reply = with(
            record(),
            "/ses/mail/commonHeaders/subject",
            "Re: deploy production".into(),
        );
        assert_no_command(parse(&reply, "").unwrap());
    }

    #[test]
    fn a_command_with_an_impossible_branch_is_ignored_with_the_reason() {
        let command = parse(&record(), "deploy staging ../../etc").unwrap();
        assert!(
            matches!(&command, Command::Ignored { reason } if reason.contains("branch")),
            "{command:?}"
        );
    }

    #[test]
    fn mail_from_an_unlisted_sender_is_rejected() {
        let mallory = with(
            with(record(), "/ses/mail/source", "mallory@example.net".into()),
            "/ses/mail/commonHeaders/from",
            serde_json::json!(["Mallory <mallory@example.net>"]),
        );
        assert_eq!(
            parse(&mallory, "deploy production"),
            Err(EmailRejection::EnvelopeSenderNotAllowed {
                address: "mallory@example.net".to_owned()
            })
        );

        // An allowed envelope does not excuse another From, nor the reverse.
        let from_only = with(
            record(),
            "/ses/mail/commonHeaders/from",
            serde_json::json!(["Mallory <mallory@example.net>"]),
        );
        assert_eq!(
            parse(&from_only, "deploy production"),
            Err(EmailRejection::FromNotAllowed {
                address: "mallory@example.net".to_owned()
            })
        );
        let envelope_only = with(record(), "/ses/mail/source", "mallory@example.net".into());
        assert!(matches!(
            parse(&envelope_only, "deploy production"),
            Err(EmailRejection::EnvelopeSenderNotAllowed { .. })
        ));
    }

    #[test]
    fn a_display_name_that_looks_allowed_is_not_the_address() {
        let disguised = with(
            record(),
            "/ses/mail/commonHeaders/from",
            serde_json::json!(["\"ana@example.com\" <mallory@example.net>"]),
        );
        assert_eq!(
            parse(&disguised, "deploy staging"),
            Err(EmailRejection::FromNotAllowed {
                address: "mallory@example.net".to_owned()
            })
        );
    }

    #[test]
    fn senders_match_whole_addresses_ignoring_case() {
        let bo = with(
            with(record(), "/ses/mail/source", "BO@example.COM".into()),
            "/ses/mail/commonHeaders/from",
            serde_json::json!(["bo@EXAMPLE.com"]),
        );
        assert_eq!(
            build(parse(&bo, "deploy staging").unwrap()).triggered_by(),
            "bo@example.com"
        );

        let lookalike = with(
            with(
                record(),
                "/ses/mail/source",
                "ana@example.com.evil.test".into(),
            ),
            "/ses/mail/commonHeaders/from",
            serde_json::json!(["ana@example.com.evil.test"]),
        );
        assert!(parse(&lookalike, "deploy staging").is_err());

        let nobody = EmailPolicy {
            allowed_senders: vec![],
            ..policy()
        };
        assert!(parse_email(&record(), "deploy staging", &nobody).is_err());
    }

    #[test]
    fn a_batv_tagged_envelope_is_its_sender_but_a_forwarders_is_not() {
        let batv = with(
            record(),
            "/ses/mail/source",
            "prvs=144d0cba7=ana@example.com".into(),
        );
        build(parse(&batv, "deploy staging").unwrap());

        let srs = with(
            record(),
            "/ses/mail/source",
            "SRS0=HHH=TT=example.com=ana@forwarder.example".into(),
        );
        assert!(matches!(
            parse(&srs, "deploy staging"),
            Err(EmailRejection::EnvelopeSenderNotAllowed { .. })
        ));
    }

    #[test]
    fn each_failing_verdict_rejects_the_message() {
        for (field, verdict) in [
            ("spfVerdict", Verdict::Spf),
            ("dkimVerdict", Verdict::Dkim),
            ("spamVerdict", Verdict::Spam),
            ("virusVerdict", Verdict::Virus),
            ("dmarcVerdict", Verdict::Dmarc),
        ] {
            for status in ["FAIL", "GRAY", "PROCESSING_FAILED"] {
                let failing = with(
                    record(),
                    &format!("/ses/receipt/{field}"),
                    serde_json::json!({ "status": status }),
                );
                assert_eq!(
                    parse(&failing, "deploy staging"),
                    Err(EmailRejection::VerdictFailed {
                        verdict,
                        status: status.to_owned()
                    })
                );
            }
            let mut missing = record();
            missing["ses"]["receipt"]
                .as_object_mut()
                .unwrap()
                .remove(field);
            assert_eq!(
                parse(&missing, "deploy staging"),
                Err(EmailRejection::MissingVerdict { verdict })
            );
        }
    }

    #[test]
    fn dmarc_must_pass_not_merely_not_fail() {
        for status in ["GRAY", "FAIL", "TEMPFAIL", "PERMFAIL"] {
            let weak = with(
                record(),
                "/ses/receipt/dmarcVerdict",
                serde_json::json!({ "status": status }),
            );
            let rejection = parse(&weak, "deploy staging").unwrap_err();
            assert_eq!(
                rejection.to_string(),
                format!("SES DMARC verdict is {status}, not PASS")
            );
        }
    }

    fn signed_by(record: Value, dkim: &[&str]) -> Value {
        let mut headers =
            vec![serde_json::json!({"name": "From", "value": "Ana <ana@example.com>"})];
        headers.extend(dkim.iter().map(|d| {
            serde_json::json!({
                "name": "DKIM-Signature",
                "value": format!("v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n d={d}; s=s1; h=from:to; bh=x; b=y")
            })
        }));
        with(record, "/ses/mail/headers", Value::Array(headers))
    }

    #[test]
    fn a_dkim_signature_must_be_aligned_with_the_from_domain() {
        let foreign = signed_by(record(), &["mailer.example.net"]);
        let rejection = parse(&foreign, "deploy staging").unwrap_err();
        assert_eq!(
            rejection.to_string(),
            "no DKIM signature is aligned with the From domain \"example.com\" \
             (signed by mailer.example.net)"
        );
        let unsigned = signed_by(record(), &[]);
        assert!(parse(&unsigned, "deploy staging")
            .unwrap_err()
            .to_string()
            .ends_with("(signed by nobody)"));
        // A look-alike suffix is not a parent domain.
        let lookalike = signed_by(record(), &["badexample.com"]);
        assert!(parse(&lookalike, "deploy staging").is_err());

        // One aligned signature among others is enough; relaxed alignment
        // takes a parent or child of the From domain.
        for aligned in [
            &["mailer.example.net", "Example.COM"][..],
            &["mail.example.com"],
        ] {
            build(parse(&signed_by(record(), aligned), "deploy staging").unwrap());
        }
        // Headers SES cut short say nothing; DMARC's PASS stands.
        let truncated = with(foreign, "/ses/mail/headersTruncated", Value::Bool(true));
        build(parse(&truncated, "deploy staging").unwrap());
    }

    #[test]
    fn a_message_needs_exactly_one_from_address() {
        let two = with(
            record(),
            "/ses/mail/commonHeaders/from",
            serde_json::json!(["ana@example.com", "bo@example.com"]),
        );
        assert_eq!(
            parse(&two, "deploy staging"),
            Err(EmailRejection::SeveralFromAddresses { count: 2 })
        );
        let none = with(
            record(),
            "/ses/mail/commonHeaders/from",
            serde_json::json!([]),
        );
        assert_eq!(
            parse(&none, "deploy staging"),
            Err(EmailRejection::NoFromAddress)
        );
    }

    #[test]
    fn a_record_that_is_not_ses_inbound_is_rejected() {
        let sns = with(record(), "/eventSource", "aws:sns".into());
        assert_eq!(
            parse(&sns, "deploy staging"),
            Err(EmailRejection::NotSes {
                found: "aws:sns".to_owned()
            })
        );
        let mut no_id = record();
        no_id["ses"]["mail"]
            .as_object_mut()
            .unwrap()
            .remove("messageId");
        assert!(matches!(
            parse(&no_id, "deploy staging"),
            Err(EmailRejection::MalformedRecord { reason }) if reason.contains("messageId")
        ));
        assert_eq!(
            records(&serde_json::json!({"detail": {}})),
            Err(EmailRejection::NoRecords)
        );
    }
}
