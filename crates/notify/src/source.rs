//! Where a secret comes from: given directly (local stack, tests) or as the
//! name of an SSM SecureString parameter, read when first needed and kept
//! for the life of the process; a function's secrets are read together, in
//! one GetParameters call.

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

/// SSM answers at most this many names per GetParameters call.
const GET_PARAMETERS_MAX: usize = 10;

/// Every secret of `sources`, in order (`None` stays `None`), the SSM ones
/// read in one GetParameters call per ten names instead of one call each.
pub async fn resolve_all<const N: usize>(
    sources: [Option<&SecretSource>; N],
    ssm: &aws_sdk_ssm::Client,
) -> Result<[Option<String>; N], SecretError> {
    let mut resolved = resolve(&sources, ssm).await?.into_iter();
    Ok(std::array::from_fn(|_| resolved.next().flatten()))
}

/// [`resolve_all`] for a list whose length is known only at run time.
pub(crate) async fn resolve(
    sources: &[Option<&SecretSource>],
    ssm: &aws_sdk_ssm::Client,
) -> Result<Vec<Option<String>>, SecretError> {
    let mut names: Vec<&str> = sources
        .iter()
        .filter_map(|s| match s {
            Some(SecretSource::Parameter(name)) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut values = std::collections::HashMap::new();
    for chunk in names.chunks(GET_PARAMETERS_MAX) {
        let out = ssm
            .get_parameters()
            .set_names(Some(chunk.iter().map(|n| (*n).to_owned()).collect()))
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| SecretError {
                name: chunk.join(", "),
                message: aws_sdk_ssm::error::DisplayErrorContext(&e).to_string(),
            })?;
        if let Some(missing) = out.invalid_parameters().first() {
            return Err(SecretError {
                name: missing.clone(),
                message: "no such parameter".into(),
            });
        }
        for parameter in out.parameters() {
            if let (Some(name), Some(value)) = (parameter.name(), parameter.value()) {
                values.insert(name.to_owned(), value.to_owned());
            }
        }
    }
    sources
        .iter()
        .map(|source| match source {
            None => Ok(None),
            Some(SecretSource::Value(value)) => Ok(Some(value.clone())),
            Some(SecretSource::Parameter(name)) => {
                values
                    .get(name)
                    .cloned()
                    .map(Some)
                    .ok_or_else(|| SecretError {
                        name: name.clone(),
                        message: "the parameter has no value".into(),
                    })
            }
        })
        .collect()
}
