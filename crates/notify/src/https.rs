//! HTTPS clients that share one TLS configuration per process.
//!
//! reqwest's `rustls` backend builds a platform verifier for every client,
//! and on Linux that reads and parses every root certificate of the system
//! each time. A function holding several clients (site-build: the source
//! fetcher, the GitHub API, the notifier) paid that once per client at cold
//! start. [`client_builder`] hands out builders preconfigured with one
//! configuration, built on first use: the same provider (aws-lc-rs), the
//! same platform verifier and protocol versions reqwest would pick, HTTP/1.1
//! as the only protocol offered (the clients speak nothing else).

use std::sync::{Arc, OnceLock};

use rustls_platform_verifier::BuilderVerifierExt;

static TLS: OnceLock<Option<rustls::ClientConfig>> = OnceLock::new();

/// A reqwest client builder using the process's shared TLS configuration
/// (reqwest's own, per client, if that could not be built).
pub fn client_builder() -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder();
    match TLS.get_or_init(shared_config) {
        Some(config) => builder.tls_backend_preconfigured(config.clone()),
        None => builder,
    }
}

fn shared_config() -> Option<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let built = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_platform_verifier());
    match built {
        Ok(builder) => {
            let mut config = builder.with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(config)
        }
        Err(err) => {
            tracing::warn!(error = %err, "no shared TLS configuration; each HTTPS client builds its own");
            None
        }
    }
}
