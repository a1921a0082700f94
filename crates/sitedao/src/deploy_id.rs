//! Deploy ids: the name of one complete copy of the site under a target's
//! prefix (`deploys/{target}/{deploy_id}/`), recorded on the deployment that
//! made it and named by rollbacks.

use svix_ksuid::{KsuidLike, KsuidMs};

/// What [`new_deploy_id`] makes: a KSUID (27 base-62 characters). Anything
/// else under a target's prefix is never pruned nor rolled back to, and a
/// name with `/` or `..` never reaches a key.
pub fn is_deploy_id(id: &str) -> bool {
    id.len() == 27 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A new deploy's id: a KSUID, so ids sort by the time they were made (to
/// about 4 ms: a KSUID whose first payload byte holds the fraction of the
/// second).
pub fn new_deploy_id() -> String {
    KsuidMs::now(None).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_ids_are_ksuids_and_nothing_else() {
        assert!(is_deploy_id(&new_deploy_id()));
        for bad in [
            "",
            "..",
            "../staging",
            "2qJ8aK3bX0m1N2o3P4q5R6s7T8",
            "2qJ8aK3bX0m1N2o3P4q5R6s7T8/x",
        ] {
            assert!(!is_deploy_id(bad), "{bad}");
        }
    }
}
