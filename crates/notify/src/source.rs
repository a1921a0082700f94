//! Where a secret comes from: given directly (local stack, tests) or as the
//! name of an SSM SecureString parameter, read once per cold start.

/// A secret's source, as a function's configuration names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Value(String),
    Parameter(String),
}

#[derive(Debug, thiserror::Error)]
#[error("reading SSM parameter {name}: {message}")]
pub struct SecretError {
    pub name: String,
    pub message: String,
}

impl SecretSource {
    /// The secret itself (decrypted when it is a SecureString).
    pub async fn resolve(&self, ssm: &aws_sdk_ssm::Client) -> Result<String, SecretError> {
        let name = match self {
            SecretSource::Value(value) => return Ok(value.clone()),
            SecretSource::Parameter(name) => name,
        };
        let failed = |message: String| SecretError {
            name: name.clone(),
            message,
        };
        let out = ssm
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| failed(aws_sdk_ssm::error::DisplayErrorContext(&e).to_string()))?;
        out.parameter()
            .and_then(|p| p.value())
            .map(str::to_owned)
            .ok_or_else(|| failed("the parameter has no value".into()))
    }
}
