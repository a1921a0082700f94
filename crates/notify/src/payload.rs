//! The JSON bodies sent to each kind of target. Everything is built as
//! `serde_json` values, so user text (a CloudFormation or ECS reason can hold
//! quotes, newlines and markup) is always encoded by the serializer.

use serde_json::{json, Value};

use crate::{Link, Notice};

// Slack rejects the whole message (`invalid_blocks`) when a block exceeds its
// limits, so long text is cut to fit instead of losing the notice.
const HEADER_MAX_CHARS: usize = 150;
const SECTION_TEXT_MAX_CHARS: usize = 3000;
const FIELD_TEXT_MAX_CHARS: usize = 2000;
const CONTEXT_MAX_ELEMENTS: usize = 10;
const DRY_RUN_PREFIX: &str = "DRY RUN: ";

/// The Slack incoming-webhook body: a coloured attachment holding Block Kit
/// blocks, with a plain `text` fallback for notifications and old clients.
pub fn slack_payload(notice: &Notice) -> Value {
    let mut blocks = vec![header_block(notice)];

    let fields: Vec<Value> = [
        ("Environment", Some(&notice.environment)),
        ("Service", notice.service.as_ref()),
        ("Cluster", notice.cluster.as_ref()),
        ("Deployment", notice.deployment_id.as_ref()),
        ("Task definition", notice.task_definition.as_ref()),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|value| field(name, value)))
    .collect();
    blocks.push(json!({ "type": "section", "fields": fields }));

    if let Some(reason) = &notice.reason {
        let heading = "*Reason*\n";
        let body = escape_mrkdwn_within(reason, SECTION_TEXT_MAX_CHARS - heading.len());
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": format!("{heading}{body}") },
        }));
    }

    let links: Vec<Value> = notice
        .links
        .iter()
        .filter_map(link_element)
        .take(CONTEXT_MAX_ELEMENTS)
        .collect();
    if !links.is_empty() {
        blocks.push(json!({ "type": "context", "elements": links }));
    }

    json!({
        "text": fallback_text(notice),
        "attachments": [{ "color": notice.outcome.colour(), "blocks": blocks }],
    })
}

/// The body for a generic webhook: one flat object, absent values as `null`.
pub fn webhook_payload(notice: &Notice) -> Value {
    let links: Vec<Value> = notice
        .links
        .iter()
        .map(|link| json!({ "label": link.label, "url": link.url }))
        .collect();
    json!({
        "outcome": notice.outcome.as_str(),
        "title": notice.title,
        "environment": notice.environment,
        "service": notice.service,
        "cluster": notice.cluster,
        "deployment_id": notice.deployment_id,
        "task_definition": notice.task_definition,
        "reason": notice.reason,
        "dry_run": notice.dry_run,
        "links": links,
    })
}

fn dry_run_prefix(notice: &Notice) -> &'static str {
    if notice.dry_run {
        DRY_RUN_PREFIX
    } else {
        ""
    }
}

fn title(notice: &Notice) -> String {
    if notice.title.trim().is_empty() {
        format!("Deployment {}", notice.outcome)
    } else {
        notice.title.clone()
    }
}

/// Plain text, unescaped: this is what phone notifications and screen readers show.
fn fallback_text(notice: &Notice) -> String {
    let mut text = format!(
        "{}{} (env: {}",
        dry_run_prefix(notice),
        title(notice),
        notice.environment
    );
    if let Some(service) = &notice.service {
        text.push_str(", service: ");
        text.push_str(service);
    }
    text.push(')');
    if let Some(reason) = &notice.reason {
        text.push_str("\nReason: ");
        text.push_str(reason);
    }
    text
}

fn header_block(notice: &Notice) -> Value {
    let text = format!("{}{}", dry_run_prefix(notice), title(notice));
    json!({
        "type": "header",
        "text": { "type": "plain_text", "text": truncate_chars(&text, HEADER_MAX_CHARS) },
    })
}

fn field(name: &str, value: &str) -> Value {
    let heading = format!("*{name}*\n");
    let body = escape_mrkdwn_within(value, FIELD_TEXT_MAX_CHARS - heading.chars().count());
    json!({ "type": "mrkdwn", "text": format!("{heading}{body}") })
}

/// A `<url|label>` mrkdwn link, or `None` when it cannot be shown intact.
fn link_element(link: &Link) -> Option<Value> {
    let url = link.url.trim();
    if url.is_empty() {
        return None;
    }
    // `|` would end the URL part of Slack's link syntax early.
    let url = escape_mrkdwn(url).replace('|', "%7C");
    let text = if link.label.trim().is_empty() {
        format!("<{url}>")
    } else {
        format!("<{url}|{}>", escape_mrkdwn(&link.label))
    };
    // A cut link would point somewhere else; drop it instead.
    (text.chars().count() <= SECTION_TEXT_MAX_CHARS)
        .then(|| json!({ "type": "mrkdwn", "text": text }))
}

/// The three characters Slack's mrkdwn reserves for its own markup.
fn escape_mrkdwn(text: &str) -> String {
    escape_mrkdwn_within(text, usize::MAX)
}

/// Escapes `text` for mrkdwn in at most `max_chars` characters, ending with `…`
/// when cut; never cuts inside an `&amp;`-style entity.
fn escape_mrkdwn_within(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut used = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let piece = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            _ => "",
        };
        let width = if piece.is_empty() { 1 } else { piece.len() };
        let reserve = if chars.peek().is_some() { 1 } else { 0 };
        if used + width + reserve > max_chars {
            out.push('…');
            break;
        }
        if piece.is_empty() {
            out.push(c);
        } else {
            out.push_str(piece);
        }
        used += width;
    }
    out
}

fn truncate_chars(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max_chars - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Outcome;

    fn blocks(payload: &Value) -> &Vec<Value> {
        payload["attachments"][0]["blocks"].as_array().unwrap()
    }

    #[test]
    fn slack_colour_follows_the_outcome() {
        for (outcome, colour) in [
            (Outcome::Started, "#439FE0"),
            (Outcome::Succeeded, "#2EB67D"),
            (Outcome::Failed, "#E01E5A"),
            (Outcome::Info, "#9E9E9E"),
        ] {
            let payload = slack_payload(&Notice::new(outcome, "t", "dev"));
            assert_eq!(payload["attachments"][0]["color"], colour, "{outcome}");
        }
    }

    #[test]
    fn dry_run_is_marked_in_the_text_and_the_header() {
        let notice = Notice::new(Outcome::Started, "Deploying api", "prd").with_dry_run(true);
        let payload = slack_payload(&notice);
        assert!(payload["text"]
            .as_str()
            .unwrap()
            .starts_with("DRY RUN: Deploying api"));
        assert_eq!(blocks(&payload)[0]["type"], "header");
        assert_eq!(
            blocks(&payload)[0]["text"]["text"],
            "DRY RUN: Deploying api"
        );

        let live = slack_payload(&notice.with_dry_run(false));
        assert!(!live.to_string().contains("DRY RUN"));
    }

    #[test]
    fn only_present_fields_are_shown() {
        let notice = Notice::new(Outcome::Succeeded, "Deployed", "stg")
            .with_service("api")
            .with_task_definition("arn:aws:ecs:eu-west-1:1:task-definition/api:7");
        let payload = slack_payload(&notice);
        let fields: Vec<&str> = blocks(&payload)[1]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "*Environment*\nstg",
                "*Service*\napi",
                "*Task definition*\narn:aws:ecs:eu-west-1:1:task-definition/api:7",
            ]
        );
        // No reason, no links: header and fields only.
        assert_eq!(blocks(&payload).len(), 2);
    }

    #[test]
    fn reason_is_raw_in_the_fallback_and_escaped_in_mrkdwn() {
        let reason = "said \"no\"\nline two <tag> & more";
        let payload = slack_payload(&Notice::new(Outcome::Failed, "x", "dev").with_reason(reason));
        assert!(payload["text"].as_str().unwrap().ends_with(reason));
        assert_eq!(
            blocks(&payload)[2]["text"]["text"],
            "*Reason*\nsaid \"no\"\nline two &lt;tag&gt; &amp; more"
        );
    }

    #[test]
    fn links_become_mrkdwn_links() {
        let notice = Notice::new(Outcome::Info, "x", "dev")
            .with_link("Logs & <more>", "https://example.com/a?b=1&c=2|3")
            .with_link("empty", " ");
        let payload = slack_payload(&notice);
        let context = &blocks(&payload)[2];
        assert_eq!(context["type"], "context");
        assert_eq!(
            context["elements"],
            json!([{
                "type": "mrkdwn",
                "text": "<https://example.com/a?b=1&amp;c=2%7C3|Logs &amp; &lt;more&gt;>",
            }])
        );
    }

    #[test]
    fn long_text_is_cut_to_slack_limits_without_splitting_entities() {
        let reason = "&".repeat(5000);
        let notice = Notice::new(Outcome::Failed, "t".repeat(400), "dev").with_reason(&reason);
        let payload = slack_payload(&notice);
        let header = blocks(&payload)[0]["text"]["text"].as_str().unwrap();
        assert_eq!(header.chars().count(), HEADER_MAX_CHARS);
        let text = blocks(&payload)[2]["text"]["text"].as_str().unwrap();
        assert!(text.chars().count() <= SECTION_TEXT_MAX_CHARS);
        let body = text
            .strip_prefix("*Reason*\n")
            .unwrap()
            .strip_suffix('…')
            .unwrap();
        assert_eq!(body.replace("&amp;", ""), "");
        // The fallback is not block-limited and keeps the whole reason.
        assert!(payload["text"].as_str().unwrap().ends_with(&reason));
    }

    #[test]
    fn escaping_within_a_limit_keeps_short_text_whole() {
        assert_eq!(escape_mrkdwn_within("a<b", 6), "a&lt;b");
        assert_eq!(escape_mrkdwn_within("a<bc", 6), "a&lt;…");
        assert_eq!(escape_mrkdwn_within("abc", 3), "abc");
        assert_eq!(escape_mrkdwn_within("abcd", 3), "ab…");
    }

    #[test]
    fn webhook_payload_is_flat_with_snake_case_outcome() {
        let notice = Notice::new(Outcome::Succeeded, "Deployed", "prd")
            .with_service("api")
            .with_reason("ok")
            .with_link("Console", "https://console.aws.amazon.com/");
        assert_eq!(
            webhook_payload(&notice),
            json!({
                "outcome": "succeeded",
                "title": "Deployed",
                "environment": "prd",
                "service": "api",
                "cluster": null,
                "deployment_id": null,
                "task_definition": null,
                "reason": "ok",
                "dry_run": false,
                "links": [{ "label": "Console", "url": "https://console.aws.amazon.com/" }],
            })
        );
    }
}
