//! Delivery claims: the key under which a request is recorded as acted on.

use std::fmt;

use serde::Serialize;

/// The key under which the handler records that it acted on a command, so a
/// redelivered event is recognised and builds nothing new (the store's
/// claims, `pk = dedupe#{key}`).
///
/// It is the id the request's door gave it (site-build's `Origin`:
/// `github/{body sha256}`, `ses/{message id}`, `direct/{session id}`) plus
/// what was asked (`…/build-staging`), because one delivery can ask for two
/// things (a pull request's preview and staging) that are each done once.
/// The action never holds a `/`, so two different requests never share a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DedupeKey(String);

impl DedupeKey {
    /// The key of `action` (`build-staging`, `remove-preview`; no `/`)
    /// asked for by the request its door knows as `origin_id`.
    pub fn new(origin_id: &str, action: &str) -> Self {
        debug_assert!(!action.contains('/'), "{action:?} holds a /");
        Self(format!("{origin_id}/{action}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DedupeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_the_origin_id_then_the_action() {
        let key = DedupeKey::new("ses/m-9", "show-preview");
        assert_eq!(key.as_str(), "ses/m-9/show-preview");
        assert_eq!(key.to_string(), "ses/m-9/show-preview");
        assert_eq!(
            serde_json::to_value(&key).unwrap(),
            serde_json::json!("ses/m-9/show-preview")
        );
        assert_ne!(key, DedupeKey::new("ses/m-9", "remove-preview"));
    }
}
