//! The emulated account: its id, region and the credentials that act in it.
//! The bottom layer of the harness: the template reader, the fault engine,
//! the emulator and the IAM control API all build on it, none beneath it.

use serde::Deserialize;

pub const REGION: &str = "us-east-1";

/// The access key id of the harness's administrator; the fault engine
/// names its calls by it ([`crate::Caller::Admin`]).
pub const ADMIN_ACCESS_KEY: &str = "testing";
pub const ACCOUNT_ID: &str = "123456789012";

/// Temporary credentials of a role session (an `ASIA…` key).
#[derive(Debug, Clone, Deserialize)]
pub struct RoleCredentials {
    #[serde(rename = "AccessKeyId")]
    pub access_key_id: String,
    #[serde(rename = "SecretAccessKey")]
    pub secret_access_key: String,
    #[serde(rename = "SessionToken")]
    pub session_token: String,
}
